//! The terminal UI of `holdup top`: state ([`App`]), update
//! ([`App::update`] with an [`Event`]) and render ([`App::render`] into any
//! ratatui backend) kept apart, so tests drive it with real recorded
//! windows and read the screen from ratatui's `TestBackend`.
//!
//! This file uses no other module of the command (tests include it by
//! path): windows arrive as [`Event::Window`], keys as [`Event::Key`].
//!
//! The "now" verdict and the per-role view are holdup-diagnose's: the
//! diagnosis judging the last [`NOW_WINDOWS`] windows alone (what
//! `holdup diagnose --no-baseline` says of them) and its roles (process-name
//! pattern × thread-name pattern), not a second analysis.

use holdup_diagnose::model::{Model, Source};
use holdup_diagnose::{SplitRequest, VerdictKind};
use holdup_model::{Snapshot, ThreadState};
use ratatui::crossterm::event::{self as ct, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Windows the "now" verdict judges: the shown one and those just before.
pub const NOW_WINDOWS: usize = 5;
/// Windows kept for stepping back (an hour of 1 s windows).
pub const HISTORY: usize = 3600;

/// What the UI reacts to.
#[derive(Debug)]
pub enum Event {
    /// A window closed (live) or was played (replay).
    Window(Box<Snapshot>),
    /// A key.
    Key(KeyCode),
    /// The feed ended, and why.
    Ended(String),
}

/// A column the table can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Time not sleeping (the default: who is busy or held up).
    Busy,
    /// On-CPU time.
    Cpu,
    /// Run-queue wait.
    RunQueue,
    /// I/O wait.
    IoWait,
    /// Other uninterruptible sleep.
    OtherD,
    /// Sleep.
    Sleep,
    /// Name.
    Name,
}

impl SortKey {
    const ALL: [SortKey; 7] = [
        SortKey::Busy,
        SortKey::Cpu,
        SortKey::RunQueue,
        SortKey::IoWait,
        SortKey::OtherD,
        SortKey::Sleep,
        SortKey::Name,
    ];

    fn label(self) -> &'static str {
        match self {
            SortKey::Busy => "busy",
            SortKey::Cpu => "CPU%",
            SortKey::RunQueue => "RUNQ%",
            SortKey::IoWait => "IOW%",
            SortKey::OtherD => "D%",
            SortKey::Sleep => "SLP%",
            SortKey::Name => "name",
        }
    }
}

/// Threads one by one, or grouped by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// One row per thread.
    Threads,
    /// One row per role (holdup-diagnose's roles).
    Roles,
}

/// One table row: a thread or a role, its states in the window.
#[derive(Clone, Debug, PartialEq)]
pub struct RowData {
    /// Thread name, or role name.
    pub name: String,
    /// Thread id, or the number of threads in the role.
    pub id: String,
    /// Process name (roles), or empty.
    pub process: String,
    /// Serves clients (roles).
    pub entry: bool,
    /// Share of the window per state (summed over a role's threads, divided
    /// by their number), in [`ThreadState::ALL`] order, 0..=1.
    pub states: [f64; 5],
    /// What it was most blocked on, with its share.
    pub top_wait: String,
}

impl RowData {
    fn busy(&self) -> f64 {
        self.states[..4].iter().sum()
    }

    fn key(&self, k: SortKey) -> f64 {
        match k {
            SortKey::Busy => self.busy(),
            SortKey::Cpu => self.states[0],
            SortKey::RunQueue => self.states[1],
            SortKey::IoWait => self.states[2],
            SortKey::OtherD => self.states[3],
            SortKey::Sleep => self.states[4],
            SortKey::Name => 0.0,
        }
    }
}

/// The "now" line of one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Now {
    /// The verdict in one line.
    pub text: String,
    /// It names a hold-up (not "nothing holds it up" or "not enough data").
    pub holdup: bool,
}

/// The UI's state.
pub struct App {
    target: String,
    history: VecDeque<Snapshot>,
    /// Windows dropped from the front of `history` so far.
    dropped: usize,
    /// Shown window (absolute index); None follows the newest.
    pinned: Option<usize>,
    /// Sort column and direction.
    pub sort: SortKey,
    /// Largest first.
    pub descending: bool,
    /// Name filter (case-insensitive substring).
    pub filter: String,
    /// Typing the filter.
    pub editing: bool,
    /// Threads or roles.
    pub grouping: Grouping,
    /// "now" per absolute window index.
    now: HashMap<usize, Now>,
    /// Why the feed ended, once it did.
    pub ended: Option<String>,
    /// The user asked to quit.
    pub quit: bool,
}

impl App {
    /// An empty view of `target`.
    pub fn new(target: &str) -> App {
        App {
            target: target.to_string(),
            history: VecDeque::new(),
            dropped: 0,
            pinned: None,
            sort: SortKey::Busy,
            descending: true,
            filter: String::new(),
            editing: false,
            grouping: Grouping::Threads,
            now: HashMap::new(),
            ended: None,
            quit: false,
        }
    }

    /// Windows received (including those dropped from the history).
    pub fn received(&self) -> usize {
        self.dropped + self.history.len()
    }

    /// Absolute index of the shown window, if any.
    pub fn shown(&self) -> Option<usize> {
        let last = self.received().checked_sub(1)?;
        Some(self.pinned.unwrap_or(last).clamp(self.dropped, last))
    }

    /// Paused on a window (not following the newest).
    pub fn paused(&self) -> bool {
        self.pinned.is_some()
    }

    fn snapshot(&self, abs: usize) -> &Snapshot {
        &self.history[abs - self.dropped]
    }

    /// The shown window and the ones before it that the "now" verdict and
    /// the roles are judged on.
    fn context(&self, abs: usize) -> Vec<Snapshot> {
        let from = abs.saturating_sub(NOW_WINDOWS - 1).max(self.dropped);
        (from..=abs).map(|i| self.snapshot(i).clone()).collect()
    }

    /// Applies one event.
    pub fn update(&mut self, ev: Event) {
        match ev {
            Event::Window(s) => {
                self.history.push_back(*s);
                if self.history.len() > HISTORY {
                    self.history.pop_front();
                    self.now.remove(&self.dropped);
                    self.dropped += 1;
                }
            }
            Event::Ended(why) => self.ended = Some(why),
            Event::Key(k) if self.editing => match k {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            },
            Event::Key(k) => self.key(k),
        }
    }

    fn key(&mut self, k: KeyCode) {
        let last = self.received().saturating_sub(1);
        match k {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Char(' ') | KeyCode::Char('p') => {
                self.pinned = match self.pinned {
                    Some(_) => None,
                    None => self.shown(),
                }
            }
            KeyCode::Left | KeyCode::Char('b') => {
                if let Some(s) = self.shown() {
                    self.pinned = Some(s.saturating_sub(1).max(self.dropped));
                }
            }
            KeyCode::Right | KeyCode::Char('f') => {
                if let Some(s) = self.shown() {
                    // Stepping stays paused, also on the newest window.
                    self.pinned = Some((s + 1).min(last));
                }
            }
            KeyCode::Home => self.pinned = Some(self.dropped),
            KeyCode::End => self.pinned = None,
            KeyCode::Char('s') => {
                let i = SortKey::ALL
                    .iter()
                    .position(|s| *s == self.sort)
                    .unwrap_or(0);
                self.sort = SortKey::ALL[(i + 1) % SortKey::ALL.len()];
            }
            KeyCode::Char(c @ '1'..='7') => {
                self.sort = SortKey::ALL[c as usize - '1' as usize];
            }
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Char('g') | KeyCode::Tab => {
                self.grouping = match self.grouping {
                    Grouping::Threads => Grouping::Roles,
                    Grouping::Roles => Grouping::Threads,
                }
            }
            _ => {}
        }
    }

    /// The "now" verdict of window `abs` (computed once per window).
    pub fn now(&mut self, abs: usize) -> Now {
        if let Some(n) = self.now.get(&abs) {
            return n.clone();
        }
        let n = now_verdict(&self.context(abs));
        self.now.insert(abs, n.clone());
        n
    }

    /// The rows of the shown window, filtered and sorted.
    pub fn rows(&self) -> Vec<RowData> {
        let Some(abs) = self.shown() else {
            return Vec::new();
        };
        let mut rows = match self.grouping {
            Grouping::Threads => thread_rows(self.snapshot(abs)),
            Grouping::Roles => role_rows(&self.context(abs)),
        };
        let f = self.filter.to_lowercase();
        rows.retain(|r| {
            f.is_empty()
                || r.name.to_lowercase().contains(&f)
                || r.process.to_lowercase().contains(&f)
        });
        rows.sort_by(|a, b| {
            let o = if self.sort == SortKey::Name {
                a.name.cmp(&b.name).then(a.id.cmp(&b.id))
            } else {
                a.key(self.sort)
                    .total_cmp(&b.key(self.sort))
                    .then(b.name.cmp(&a.name))
            };
            if self.descending == (self.sort != SortKey::Name) {
                o.reverse()
            } else {
                o
            }
        });
        rows
    }

    /// Draws the whole screen.
    pub fn render(&mut self, f: &mut Frame) {
        let [head, now, table, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let Some(abs) = self.shown() else {
            f.render_widget(
                Paragraph::new(format!(
                    "holdup  {}  waiting for the first window…  (q quits)",
                    self.target
                )),
                head,
            );
            return;
        };
        let n = self.now(abs);
        let s = self.snapshot(abs);
        let origin = self.history[0].window.start_ns;
        let win = s.window.duration_ns().max(1);
        let mode = match (&self.ended, self.paused()) {
            (_, true) => Span::styled(" PAUSED ", Style::new().fg(Color::Black).bg(Color::Yellow)),
            (Some(_), false) => {
                Span::styled(" ENDED ", Style::new().fg(Color::Black).bg(Color::Gray))
            }
            (None, false) => Span::styled(" LIVE ", Style::new().fg(Color::Black).bg(Color::Green)),
        };
        let header = Line::from(vec![
            Span::styled("holdup ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!("{}  ", self.target)),
            mode,
            Span::raw(format!(
                "  window #{} at {:.1}s ({}/{})  {:.2}s  threads {}  cost {:.2}% CPU  loss: {}",
                s.window.index,
                s.window.start_ns.saturating_sub(origin) as f64 / 1e9,
                abs + 1,
                self.received(),
                win as f64 / 1e9,
                s.threads.len(),
                s.overhead_ns() as f64 * 100.0 / win as f64,
                s.loss
            )),
        ]);
        f.render_widget(Paragraph::new(header), head);
        let colour = if n.holdup { Color::Red } else { Color::Green };
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("now: ", Style::new().add_modifier(Modifier::BOLD)),
                Span::styled(n.text.clone(), Style::new().fg(colour)),
            ])),
            now,
        );

        let rows = self.rows();
        let first = match self.grouping {
            Grouping::Threads => "THREAD",
            Grouping::Roles => "ROLE",
        };
        let second = match self.grouping {
            Grouping::Threads => "TID",
            Grouping::Roles => "THREADS",
        };
        let arrow = if self.descending { "▼" } else { "▲" };
        let mark = |k: SortKey, t: &str| {
            if self.sort == k {
                format!("{t}{arrow}")
            } else {
                t.to_string()
            }
        };
        let head_row = Row::new(vec![
            Cell::from(mark(SortKey::Name, first)),
            Cell::from(second),
            Cell::from(mark(SortKey::Cpu, "CPU%")),
            Cell::from(mark(SortKey::RunQueue, "RUNQ%")),
            Cell::from(mark(SortKey::IoWait, "IOW%")),
            Cell::from(mark(SortKey::OtherD, "D%")),
            Cell::from(mark(SortKey::Sleep, "SLP%")),
            Cell::from(mark(SortKey::Busy, "STATES")),
            Cell::from("MOST BLOCKED ON"),
        ])
        .style(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD));
        const COLOURS: [Color; 5] = [
            Color::Green,
            Color::Red,
            Color::Blue,
            Color::Magenta,
            Color::DarkGray,
        ];
        let body: Vec<Row> = rows
            .iter()
            .map(|r| {
                let pct = |i: usize| {
                    let v = r.states[i] * 100.0;
                    let st = if (1..=3).contains(&i) && v >= 10.0 {
                        Style::new().fg(COLOURS[i]).add_modifier(Modifier::BOLD)
                    } else {
                        Style::new()
                    };
                    Cell::from(format!("{v:6.1}")).style(st)
                };
                let mut name = r.name.clone();
                if self.grouping == Grouping::Roles {
                    name = format!(
                        "{}{} [{}]",
                        if r.entry { "* " } else { "" },
                        r.name,
                        r.process
                    );
                }
                Row::new(vec![
                    Cell::from(name),
                    Cell::from(r.id.clone()),
                    pct(0),
                    pct(1),
                    pct(2),
                    pct(3),
                    pct(4),
                    Cell::from(bar(&r.states, 20, &COLOURS)),
                    Cell::from(r.top_wait.clone()),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(36),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(20),
            Constraint::Min(10),
        ];
        f.render_widget(Table::new(body, widths).header(head_row), table);

        let foot_line = if self.editing {
            Line::from(vec![
                Span::styled("filter: ", Style::new().fg(Color::Yellow)),
                Span::raw(format!("{}▏  (Enter keeps it, Esc clears)", self.filter)),
            ])
        } else {
            let mut spans = vec![Span::styled(
                "q quit  space pause  ←/→ step  s/1-7 sort  r reverse  / filter  g roles/threads",
                Style::new().fg(Color::DarkGray),
            )];
            spans.push(Span::raw(format!("  sort: {}", self.sort.label())));
            if !self.filter.is_empty() {
                spans.push(Span::styled(
                    format!("  filter: {}", self.filter),
                    Style::new().fg(Color::Yellow),
                ));
            }
            if let Some(why) = &self.ended {
                spans.push(Span::raw(format!("  ({why})")));
            }
            Line::from(spans)
        };
        f.render_widget(Paragraph::new(foot_line), foot);
    }
}

/// A bar of `width` cells, one colour per state in proportion to its share.
fn bar(states: &[f64; 5], width: usize, colours: &[Color; 5]) -> Line<'static> {
    let mut spans = Vec::new();
    let mut used = 0;
    for (i, ch) in ['#', 'r', 'i', 'D', '.'].iter().enumerate() {
        let n = ((states[i] * width as f64).round() as usize).min(width - used);
        if n > 0 {
            spans.push(Span::styled(
                ch.to_string().repeat(n),
                Style::new().fg(colours[i]),
            ));
        }
        used += n;
    }
    Line::from(spans)
}

fn top_wait(waits: &[(String, u64)], of: u64) -> String {
    waits
        .iter()
        .max_by_key(|(_, ns)| *ns)
        .filter(|(_, ns)| *ns > 0)
        .map(|(k, ns)| format!("{k} {:.0}%", *ns as f64 * 100.0 / of.max(1) as f64))
        .unwrap_or_default()
}

/// One row per thread of a window.
pub fn thread_rows(s: &Snapshot) -> Vec<RowData> {
    let win = s.window.duration_ns().max(1) as f64;
    s.threads
        .iter()
        .map(|t| {
            let mut states = [0.0; 5];
            for (i, st) in ThreadState::ALL.iter().enumerate() {
                states[i] = t.states.get(*st) as f64 / win;
            }
            let waits: Vec<(String, u64)> = t
                .waits
                .iter()
                .map(|w| (w.kind.label().to_string(), w.ns))
                .collect();
            RowData {
                name: format!("{}{}", t.comm, if t.exited { " (exited)" } else { "" }),
                id: t.tid.to_string(),
                process: String::new(),
                entry: false,
                states,
                top_wait: top_wait(&waits, s.window.duration_ns()),
            }
        })
        .collect()
}

/// One row per role in the last window of `context`, roles as the
/// diagnosis groups threads over `context`.
pub fn role_rows(context: &[Snapshot]) -> Vec<RowData> {
    let Some(s) = context.last() else {
        return Vec::new();
    };
    let m = Model::build(&[Source {
        label: "top",
        windows: context,
    }]);
    let win = s.window.duration_ns().max(1);
    // role -> (threads, state ns, waits)
    type RoleSums = (u64, [u64; 5], BTreeMap<String, u64>);
    let mut acc: BTreeMap<usize, RoleSums> = BTreeMap::new();
    for t in &s.threads {
        let Some(&r) = m.role_of.get(&(0, t.tid)) else {
            continue;
        };
        let e = acc.entry(r).or_default();
        e.0 += 1;
        for (i, st) in ThreadState::ALL.iter().enumerate() {
            e.1[i] += t.states.get(*st);
        }
        for w in &t.waits {
            *e.2.entry(w.kind.label().to_string()).or_default() += w.ns;
        }
    }
    acc.into_iter()
        .map(|(r, (n, ns, waits))| {
            let role = &m.roles[r];
            let of = win * n.max(1);
            let mut states = [0.0; 5];
            for (i, v) in ns.iter().enumerate() {
                states[i] = *v as f64 / of as f64;
            }
            let waits: Vec<(String, u64)> = waits.into_iter().collect();
            RowData {
                name: role.name.clone(),
                id: n.to_string(),
                process: role.process.clone(),
                entry: role.entry,
                states,
                top_wait: top_wait(&waits, of),
            }
        })
        .collect()
}

/// What holds the service up in these windows, judged alone (no baseline):
/// holdup-diagnose's verdict on them, in one line.
pub fn now_verdict(windows: &[Snapshot]) -> Now {
    let label = match windows.len() {
        1 => "this window only".to_string(),
        n => format!("last {n} windows"),
    };
    let d = holdup_diagnose::diagnose(&holdup_diagnose::Input {
        target: String::new(),
        windows,
        label: &label,
        baseline_windows: None,
        split: SplitRequest {
            no_baseline: true,
            ..SplitRequest::default()
        },
    });
    let v = d.top();
    let holdup = v.significant
        && !matches!(
            v.kind,
            VerdictKind::NothingHoldsItUp
                | VerdictKind::InsufficientData
                | VerdictKind::NoSignificantChange
        );
    let mut text = v.kind.title().to_string();
    if let Some(r) = &v.role {
        text.push_str(&format!(" in {r}"));
    }
    let who: Vec<&str> = v.culprits.iter().take(3).map(|c| c.name.as_str()).collect();
    if holdup && !who.is_empty() {
        text.push_str(&format!(" — by {}", who.join(", ")));
    }
    text.push_str(&format!(" ({label})"));
    Now { text, holdup }
}

/// Runs the UI on the terminal until the user quits: events from `rx`
/// (windows, the end of the feed) and keys from the terminal. Quitting sets
/// `stop`. The terminal is restored also when drawing fails.
pub fn run_terminal(
    mut app: App,
    rx: mpsc::Receiver<Event>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut term = ratatui::init();
    let r = (|| -> anyhow::Result<()> {
        let mut dirty = true;
        while !app.quit {
            while let Ok(ev) = rx.try_recv() {
                app.update(ev);
                dirty = true;
            }
            if dirty {
                term.draw(|f| app.render(f))?;
                dirty = false;
            }
            if ct::poll(Duration::from_millis(100))? {
                match ct::read()? {
                    ct::Event::Key(k) if k.kind == KeyEventKind::Press => {
                        if k.modifiers.contains(KeyModifiers::CONTROL)
                            && k.code == KeyCode::Char('c')
                        {
                            app.quit = true;
                        }
                        app.update(Event::Key(k.code));
                        dirty = true;
                    }
                    ct::Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
            if stop.load(Ordering::Relaxed) && app.ended.is_some() {
                // Ctrl-C from outside (SIGINT/SIGTERM) ends the UI too.
                app.quit = true;
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    ratatui::restore();
    r
}
