//! Writes the workbench's two plots of a recording as SVG files, to look at
//! them outside the UI.
//!
//! Usage: plot_svg RECORDING [OUT_DIR]   (writes plot-states.svg, plot-runq.svg)
use holdup_workbench::plot::recording_plots;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(rec) = args.next() else {
        eprintln!("usage: plot_svg RECORDING [OUT_DIR]");
        std::process::exit(2);
    };
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let bytes = std::fs::read(&rec).unwrap_or_else(|e| {
        eprintln!("cannot read {}: {e}", rec.to_string_lossy());
        std::process::exit(1);
    });
    let plots = recording_plots(&bytes).unwrap_or_else(|e| {
        eprintln!("{}: {e}", rec.to_string_lossy());
        std::process::exit(1);
    });
    for (name, svg) in [
        ("plot-states.svg", &plots.states),
        ("plot-runq.svg", &plots.runq),
    ] {
        let path = out.join(name);
        if let Err(e) = std::fs::write(&path, svg) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    println!(
        "{} windows{}; wrote plot-states.svg and plot-runq.svg to {}",
        plots.windows,
        plots.note.map(|n| format!(" ({n})")).unwrap_or_default(),
        out.display()
    );
}
