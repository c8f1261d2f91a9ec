//! Scheduled workflows: which `on.schedule` crons of a commit's workflow files match a
//! minute (UTC, as on GitHub).

use std::str::FromStr;

/// The distinct crons of `workflows` (path and text) that match `at`, sorted; a file
/// that does not parse schedules nothing.
pub fn due(workflows: &[(String, String)], at: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let mut crons = Vec::new();
    for (path, text) in workflows {
        if let Ok(workflow) =
            mobius_workflow::parse_workflow(mobius_workflow::SourceFile::new(path.clone(), text.clone()))
        {
            if let Some(trigger) = workflow.triggers.get("schedule") {
                crons.extend(trigger.crons.iter().cloned());
            }
        }
    }
    crons.sort();
    crons.dedup();
    crons.retain(|expression| {
        croner::Cron::from_str(expression).ok().and_then(|c| c.is_time_matching(&at).ok()) == Some(true)
    });
    crons
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_cron_is_due_in_the_minutes_it_matches() {
        let wf = "on:\n  schedule:\n    - cron: '*/15 * * * *'\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n";
        let files = vec![(".github/workflows/n.yml".to_string(), wf.to_string())];
        assert!(due(&files, chrono::Utc.with_ymd_and_hms(2026, 1, 1, 3, 14, 0).unwrap()).is_empty());
        assert_eq!(due(&files, chrono::Utc.with_ymd_and_hms(2026, 1, 1, 3, 15, 0).unwrap()), ["*/15 * * * *"]);
    }
}
