//! The operators' work on an incident: acknowledge, note, close, reopen.
//! Each step is checked against the incident's triage state, then kept in
//! its timeline as an action naming who took it.

use crate::{
    control::TriageStep,
    detect::{
        incident::{Action, Triage},
        Incident, Nanos,
    },
};

/// A note's limits: one line or a short paragraph, printable.
const MAX_NOTE: usize = 2000;

/// One operator step on an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Triage(TriageStep, Option<String>),
    Note(String),
}

impl Step {
    /// Whether the step may be taken on `incident`; if not, why.
    pub fn check(&self, incident: &Incident) -> Result<(), String> {
        let id = incident.id;
        let text = match self {
            Step::Note(text) => Some(text),
            Step::Triage(_, note) => note.as_ref(),
        };
        if let Some(text) = text {
            check_note(text)?;
        }
        match (self, incident.triage) {
            (Step::Triage(TriageStep::Acknowledge, _), Triage::Closed) => Err(format!(
                "incident {id} is closed: reopen it first (sensorctl reopen {id})"
            )),
            (Step::Triage(TriageStep::Close, _), Triage::Closed) => {
                Err(format!("incident {id} is already closed"))
            }
            (Step::Triage(TriageStep::Reopen, _), Triage::New | Triage::Acknowledged) => {
                Err(format!("incident {id} is not closed"))
            }
            _ => Ok(()),
        }
    }

    /// Takes the step (checked first with `check`): the new triage state,
    /// and the action for the timeline. Closing also ends the incident's
    /// activity: later evidence about its host opens a new incident.
    pub fn apply(&self, incident: &mut Incident, actor: &str, now: Nanos) -> Action {
        let (action, note) = match self {
            Step::Note(text) => ("note", Some(text)),
            Step::Triage(step, note) => {
                match step {
                    TriageStep::Acknowledge => incident.triage = Triage::Acknowledged,
                    TriageStep::Close => {
                        incident.triage = Triage::Closed;
                        incident.status = "closed";
                    }
                    TriageStep::Reopen => incident.triage = Triage::New,
                }
                (step.label(), note.as_ref())
            }
        };
        Action {
            ts: now,
            action: action.into(),
            target: incident.host.to_string(),
            detail: match note {
                Some(note) => format!("{actor}: {note}"),
                None => format!("by {actor}"),
            },
        }
    }
}

/// A note goes into alerts and terminals: printable text only, bounded.
fn check_note(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the note is empty".into());
    }
    if text.chars().count() > MAX_NOTE {
        return Err(format!("the note is longer than {MAX_NOTE} characters"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err("the note holds control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Evidence, Incidents};

    fn incident() -> Incident {
        let mut book = Incidents::default();
        let id = book
            .add(Evidence {
                host: "10.0.0.5".parse().unwrap(),
                detector: "beacon",
                technique: "T1071",
                score: 90,
                ts: 1,
                since: 1,
                peers: vec![],
                count: 1,
                summary: String::new(),
            })
            .unwrap();
        book.get(id).unwrap().clone()
    }

    fn take(i: &mut Incident, step: Step) -> Result<Action, String> {
        step.check(i)?;
        Ok(step.apply(i, "alice (uid 1000)", 5))
    }

    #[test]
    fn the_triage_steps_follow_each_other() {
        let mut i = incident();
        let ack = take(&mut i, Step::Triage(TriageStep::Acknowledge, None)).unwrap();
        assert_eq!(i.triage, Triage::Acknowledged);
        assert_eq!(ack.detail, "by alice (uid 1000)");
        let note = take(&mut i, Step::Note("user confirms the download".into())).unwrap();
        assert_eq!(note.detail, "alice (uid 1000): user confirms the download");
        take(
            &mut i,
            Step::Triage(TriageStep::Close, Some("reimaged".into())),
        )
        .unwrap();
        assert_eq!((i.triage, i.status), (Triage::Closed, "closed"));
        let e = take(&mut i, Step::Triage(TriageStep::Acknowledge, None)).unwrap_err();
        assert!(e.contains("reopen it first"), "{e}");
        assert!(take(&mut i, Step::Triage(TriageStep::Close, None)).is_err());
        take(&mut i, Step::Triage(TriageStep::Reopen, None)).unwrap();
        assert_eq!(i.triage, Triage::New);
        assert!(take(&mut i, Step::Triage(TriageStep::Reopen, None)).is_err());
    }

    #[test]
    fn notes_are_printable_and_bounded() {
        let mut i = incident();
        for bad in ["", "  ", "ring\u{7}bell", "\u{1b}[31mred"] {
            assert!(take(&mut i, Step::Note(bad.into())).is_err(), "{bad:?}");
        }
        assert!(take(&mut i, Step::Note("x".repeat(MAX_NOTE + 1))).is_err());
        assert!(take(&mut i, Step::Note("two\nlines".into())).is_ok());
    }
}
