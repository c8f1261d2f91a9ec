//! What happens to each line a step prints: workflow commands are applied, secrets
//! masked, the line timestamped into the step's log file and passed to the reporter.

use crate::commands;
use crate::process::OutputSink;
use crate::run::Shared;
use mobius_core::{AnnotationLevel, RunEvent};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

/// Effects of the workflow commands a step printed.
#[derive(Debug, Default, Clone)]
pub struct CommandEffects {
    pub outputs: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
    pub paths: Vec<String>,
    pub state: Vec<(String, String)>,
    pub errors: usize,
}

/// The sink of one step's output.
pub struct StepOutput {
    shared: Arc<Shared>,
    job: String,
    step: String,
    log: Option<BufWriter<File>>,
    stop_token: Option<String>,
    allow_unsecure: bool,
    debug: bool,
    pub effects: CommandEffects,
}

impl StepOutput {
    pub(crate) fn new(shared: Arc<Shared>, job: &str, step: &str, log_path: &Path, allow_unsecure: bool) -> Self {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .ok()
            .map(|f| BufWriter::with_capacity(256 * 1024, f));
        let debug = shared.options.secrets.get("ACTIONS_STEP_DEBUG").is_some_and(|v| v == "true");
        StepOutput {
            shared,
            job: job.to_string(),
            step: step.to_string(),
            log,
            stop_token: None,
            allow_unsecure,
            debug,
            effects: CommandEffects::default(),
        }
    }

    /// A sink for what is left of a step whose output pipe is still held by a
    /// background process: the effects gathered so far, and no log file.
    pub(crate) fn detached(shared: Arc<Shared>, job: &str, effects: CommandEffects) -> Self {
        StepOutput {
            shared,
            job: job.to_string(),
            step: String::new(),
            log: None,
            stop_token: None,
            allow_unsecure: false,
            debug: false,
            effects,
        }
    }

    /// A line from Mobius itself (errors, notices) into the same stream.
    pub fn message(&mut self, text: &str) {
        let mut line = text.to_string();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        self.emit(&line);
    }

    /// An error annotation from Mobius itself, as GitHub annotates a failed step with
    /// why it failed ("Process completed with exit code 1.").
    pub fn error_annotation(&mut self, message: &str) {
        self.shared.reporter.event(RunEvent::Annotation {
            job: self.job.clone(),
            step: self.step.clone(),
            annotation: mobius_core::Annotation {
                level: AnnotationLevel::Error,
                message: self.shared.masker.mask(message).into_owned(),
                title: None,
                file: None,
                line: None,
                col: None,
            },
        });
    }

    fn emit(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let masked = self.shared.masker.mask(text);
        if let Some(log) = self.log.as_mut() {
            let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            for line in masked.split_inclusive('\n') {
                let _ = log.write_all(stamp.as_bytes());
                let _ = log.write_all(b" ");
                let _ = log.write_all(line.as_bytes());
            }
            // One write per chunk keeps the file current for readers following it live.
            let _ = log.flush();
        }
        self.shared.reporter.log_lines(&self.job, &self.step, &masked);
    }

    pub fn flush(&mut self) {
        if let Some(log) = self.log.as_mut() {
            let _ = log.flush();
        }
    }

    /// Applies one command; returns the text to print instead of the line, if any.
    fn command(&mut self, cmd: commands::Command, raw: &str) -> Option<String> {
        let prop = |k: &str| cmd.properties.get(k).cloned().unwrap_or_default();
        match cmd.name.as_str() {
            "set-output" => self.effects.outputs.push((prop("name"), cmd.data)),
            "save-state" => self.effects.state.push((prop("name"), cmd.data)),
            "add-mask" => self.shared.masker.add(&cmd.data),
            "set-env" | "add-path" if !self.allow_unsecure => {
                self.effects.errors += 1;
                return Some(format!(
                    "Error: the `{}` command is disabled; use the GITHUB_ENV/GITHUB_PATH files, or set ACTIONS_ALLOW_UNSECURE_COMMANDS=true\n",
                    cmd.name
                ));
            }
            "set-env" => self.effects.env.push((prop("name"), cmd.data)),
            "add-path" => self.effects.paths.push(cmd.data),
            "stop-commands" => self.stop_token = Some(cmd.data),
            // Problem matchers turn tool output into annotations on GitHub; they are accepted
            // and not applied here (docs/compatibility.md).
            "echo" | "add-matcher" | "remove-matcher" => {}
            // Kept in the log as GitHub's raw logs keep them, so viewers can fold the group.
            "group" => return Some(format!("##[group]{}\n", cmd.data)),
            "endgroup" => return Some("##[endgroup]\n".to_string()),
            "error" | "warning" | "notice" | "debug" => {
                let annotation = commands::annotation(&cmd)?;
                let label = match annotation.level {
                    AnnotationLevel::Error => "Error",
                    AnnotationLevel::Warning => "Warning",
                    AnnotationLevel::Notice => "Notice",
                    AnnotationLevel::Debug => "Debug",
                };
                let at = match (&annotation.file, annotation.line) {
                    (Some(f), Some(l)) => {
                        format!(" ({f}:{l}{})", annotation.col.map(|c| format!(":{c}")).unwrap_or_default())
                    }
                    (Some(f), None) => format!(" ({f})"),
                    _ => String::new(),
                };
                let text = format!("{label}: {}{at}\n", annotation.message);
                let is_debug = annotation.level == AnnotationLevel::Debug;
                if !is_debug {
                    let masker = &self.shared.masker;
                    let mut a = annotation;
                    a.message = masker.mask(&a.message).into_owned();
                    a.title = a.title.map(|t| masker.mask(&t).into_owned());
                    a.file = a.file.map(|f| masker.mask(&f).into_owned());
                    self.shared.reporter.event(RunEvent::Annotation {
                        job: self.job.clone(),
                        step: self.step.clone(),
                        annotation: a,
                    });
                }
                return (!is_debug || self.debug).then_some(text);
            }
            _ => return Some(format!("{raw}\n")),
        }
        None
    }
}

impl OutputSink for StepOutput {
    fn lines(&mut self, text: &str) {
        // Fast path: no line can be a command, so the chunk goes out as it is.
        if self.stop_token.is_none() && memchr::memmem::find(text.as_bytes(), b"::").is_none() {
            self.emit(text);
            return;
        }
        let mut printable = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let bare = line.trim_end_matches(['\n', '\r']);
            if let Some(token) = &self.stop_token {
                if bare.trim() == format!("::{token}::") {
                    self.stop_token = None;
                    continue;
                }
                printable.push_str(bare);
                printable.push('\n');
                continue;
            }
            if bare.trim_start().starts_with("::") {
                if let Some(cmd) = commands::parse(bare) {
                    if let Some(replacement) = self.command(cmd, bare) {
                        printable.push_str(&replacement);
                    }
                    continue;
                }
            }
            printable.push_str(bare);
            printable.push('\n');
        }
        self.emit(&printable);
    }
}
