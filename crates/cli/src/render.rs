//! Rendering run events: readable lines with colour on a terminal, or one JSON object per event.

use mobius_core::{Conclusion, RunEvent};
use mobius_runner::Reporter;
use std::io::{BufWriter, Stdout, Write};
use std::sync::Mutex;
use std::time::SystemTime;

/// Human-readable output: `[job] step | line`, step timings and a final summary.
pub struct HumanReporter {
    out: Mutex<BufWriter<Stdout>>,
    color: bool,
    jobs: Mutex<Vec<(String, Conclusion, u64)>>,
    annotations: Mutex<Vec<String>>,
}

impl HumanReporter {
    pub fn new(color: bool) -> Self {
        HumanReporter {
            out: Mutex::new(BufWriter::with_capacity(256 * 1024, std::io::stdout())),
            color,
            jobs: Mutex::new(Vec::new()),
            annotations: Mutex::new(Vec::new()),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn line(&self, text: &str) {
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
}

fn seconds(ms: u64) -> String {
    mobius_core::duration::human(ms)
}

fn mark(conclusion: Conclusion) -> &'static str {
    match conclusion {
        Conclusion::Success => "✓",
        Conclusion::Failure => "✗",
        Conclusion::Cancelled => "⊘",
        Conclusion::Skipped => "-",
    }
}

fn color_of(conclusion: Conclusion) -> &'static str {
    match conclusion {
        Conclusion::Success => "32",
        Conclusion::Failure => "31",
        Conclusion::Cancelled => "33",
        Conclusion::Skipped => "2",
    }
}

impl Reporter for HumanReporter {
    fn event(&self, event: RunEvent) {
        match event {
            RunEvent::RunStarted { run_id, event_name, workflows, run_dir } => {
                self.line(&self.paint("1", &format!("▶ run {run_id} on '{event_name}': {}", workflows.join(", "))));
                self.line(&self.paint("2", &format!("  logs and artifacts in {run_dir}")));
            }
            RunEvent::JobStarted { job, .. } => {
                self.line(&format!("{} {}", self.paint("36", &format!("[{job}]")), self.paint("1", "Job started")));
            }
            RunEvent::JobSkipped { job, reason, conclusion } => {
                self.line(&format!(
                    "{} {}",
                    self.paint("36", &format!("[{job}]")),
                    self.paint("2", &format!("{} {conclusion}: {reason}", mark(conclusion)))
                ));
                if let Ok(mut jobs) = self.jobs.lock() {
                    jobs.push((job, conclusion, 0));
                }
            }
            RunEvent::JobReused { job, conclusion } => {
                self.line(&format!(
                    "{} {}",
                    self.paint("36", &format!("[{job}]")),
                    self.paint("2", &format!("- {conclusion} in the previous attempt, not run again"))
                ));
                if let Ok(mut jobs) = self.jobs.lock() {
                    jobs.push((job, conclusion, 0));
                }
            }
            RunEvent::JobFinished { job, conclusion, duration_ms, .. } => {
                let text = format!("{} Job {conclusion} in {}", mark(conclusion), seconds(duration_ms));
                self.line(&format!(
                    "{} {}",
                    self.paint("36", &format!("[{job}]")),
                    self.paint(color_of(conclusion), &text)
                ));
                if let Ok(mut jobs) = self.jobs.lock() {
                    jobs.push((job, conclusion, duration_ms));
                }
            }
            RunEvent::StepStarted { job, step, .. } => {
                self.line(&format!(
                    "{} {}",
                    self.paint("36", &format!("[{job}]")),
                    self.paint("1", &format!("▸ {step}"))
                ));
            }
            RunEvent::StepFinished { job, step, outcome, conclusion, duration_ms } => {
                let extra = if outcome != conclusion {
                    format!(" (outcome {outcome}, continue-on-error)")
                } else {
                    String::new()
                };
                let text = if conclusion == Conclusion::Skipped {
                    format!("- {step} (skipped)")
                } else {
                    format!("{} {step} ({}){extra}", mark(outcome), seconds(duration_ms))
                };
                self.line(&format!(
                    "{} {}",
                    self.paint("36", &format!("[{job}]")),
                    self.paint(color_of(outcome), &text)
                ));
            }
            RunEvent::Log { job, step, line } => self.log_lines(&job, &step, &format!("{line}\n")),
            RunEvent::Annotation { job, annotation, .. } => {
                let at = match (&annotation.file, annotation.line) {
                    (Some(f), Some(l)) => format!(" {f}:{l}"),
                    (Some(f), None) => format!(" {f}"),
                    _ => String::new(),
                };
                let level = format!("{:?}", annotation.level).to_lowercase();
                if let Ok(mut list) = self.annotations.lock() {
                    list.push(format!("  {level} [{job}]{at}: {}", annotation.message));
                }
            }
            RunEvent::Warning { message } => {
                let text = format!("warning: {message}");
                if let Ok(mut out) = self.out.lock() {
                    let _ = out.flush();
                }
                eprintln!("{}", self.paint("33", &text));
            }
            RunEvent::RunFinished { conclusion, duration_ms } => {
                let mut summary = String::from("\nJobs:\n");
                if let Ok(jobs) = self.jobs.lock() {
                    for (job, c, ms) in jobs.iter() {
                        let row = format!(
                            "  {} {job:<40} {:<9} {}",
                            mark(*c),
                            c.as_str(),
                            if *c == Conclusion::Skipped { String::new() } else { seconds(*ms) }
                        );
                        summary.push_str(&self.paint(color_of(*c), &row));
                        summary.push('\n');
                    }
                }
                if let Ok(list) = self.annotations.lock() {
                    if !list.is_empty() {
                        summary.push_str("Annotations:\n");
                        for line in list.iter() {
                            summary.push_str(&self.paint("33", line));
                            summary.push('\n');
                        }
                    }
                }
                let verdict = match conclusion {
                    Conclusion::Success => "Run succeeded",
                    Conclusion::Failure => "Run failed",
                    Conclusion::Cancelled => "Run cancelled",
                    Conclusion::Skipped => "Nothing ran",
                };
                summary.push_str(&self.paint(color_of(conclusion), &format!("{verdict} in {}", seconds(duration_ms))));
                self.line(&summary);
            }
        }
    }

    fn log_lines(&self, job: &str, step: &str, lines: &str) {
        let Ok(mut out) = self.out.lock() else { return };
        let prefix = if self.color {
            format!("\x1b[36m[{job}]\x1b[0m \x1b[2m{step} |\x1b[0m ")
        } else {
            format!("[{job}] {step} | ")
        };
        for line in lines.split_inclusive('\n') {
            // Groups are shown as a heading; their end marker is not shown.
            if line.starts_with("##[endgroup]") {
                continue;
            }
            let _ = out.write_all(prefix.as_bytes());
            match line.strip_prefix("##[group]") {
                Some(title) => {
                    let _ = out.write_all("▼ ".as_bytes());
                    let _ = out.write_all(title.as_bytes());
                }
                None => {
                    let _ = out.write_all(line.as_bytes());
                }
            }
        }
        if !lines.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
}

/// `--json`: one object per event, with a `time` field.
pub struct JsonReporter {
    out: Mutex<BufWriter<Stdout>>,
}

impl JsonReporter {
    pub fn new() -> Self {
        JsonReporter { out: Mutex::new(BufWriter::with_capacity(256 * 1024, std::io::stdout())) }
    }

    fn write(&self, out: &mut BufWriter<Stdout>, event: &RunEvent, time: &str) {
        if let Ok(serde_json::Value::Object(mut map)) = serde_json::to_value(event) {
            map.insert("time".into(), serde_json::Value::String(time.to_string()));
            let _ = serde_json::to_writer(&mut *out, &map);
            let _ = out.write_all(b"\n");
        }
    }
}

impl Reporter for JsonReporter {
    fn event(&self, event: RunEvent) {
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        if let Ok(mut out) = self.out.lock() {
            self.write(&mut out, &event, &time);
            let _ = out.flush();
        }
    }

    fn log_lines(&self, job: &str, step: &str, lines: &str) {
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let Ok(mut out) = self.out.lock() else { return };
        for line in lines.lines() {
            let event = RunEvent::Log { job: job.into(), step: step.into(), line: line.into() };
            self.write(&mut out, &event, &time);
        }
        let _ = out.flush();
    }
}
