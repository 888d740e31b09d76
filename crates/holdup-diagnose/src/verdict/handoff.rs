//! Hand-off stalls: the stage that signals the waiting role, and what holds that stage up.

use super::*;

pub(super) fn candidate(m: &Model, b: &[WinRef], i: &[WinRef], g: &Growth) -> Candidate {
    let role = m.roles[g.role].name.clone();
    let mut v = base_verdict(VerdictKind::HandoffStall, m, g);
    v.evidence.push(time_line(m, g));
    let stage = slow_stage(m, i, g.role);
    let mut leads_to = "another thread".to_string();
    if let Some(st) = stage {
        let name = m.roles[st].name.clone();
        leads_to = format!("hand-off from {name}");
        // What the stage's own time did.
        let growths: Vec<Growth> = CauseFamily::ALL
            .iter()
            .map(|f| {
                if g.alone {
                    assess_alone(m, i, st, *f)
                } else {
                    assess(m, b, i, st, *f)
                }
            })
            .collect();
        let worst = growths.iter().max_by(|x, y| x.score.total_cmp(&y.score));
        let cpu_b = m.fractions(b, st, &[Category::OnCpu]);
        let cpu_i = m.fractions(i, st, &[Category::OnCpu]);
        let stage_note = match worst {
            Some(w) if w.significant => format!(
                "{name} itself is held up {}: {}",
                w.family.words(),
                ba(g.alone, fmt::pct(mean(&w.before)), fmt::pct(mean(&w.after)))
            ),
            _ => format!(
                "{name} works: on-CPU {} of its time",
                ba(g.alone, fmt::pct(mean(&cpu_b)), fmt::pct(mean(&cpu_i)))
            ),
        };
        v.evidence.push(stage_note.clone());
        v.culprits.push(Named {
            kind: NamedKind::Role,
            name: name.clone(),
            ids: Vec::new(),
            detail: stage_note,
        });
        v.summary = format!(
            "{role} waits for {name} to hand work back: {}; {name} is the slow stage",
            change(g)
        );
    } else {
        v.summary = format!(
            "{role} waits for other threads' signals: {}; the signalling thread was not seen",
            change(g)
        );
    }
    Candidate {
        verdict: v,
        leads_to,
    }
}
