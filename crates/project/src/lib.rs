//! A project's `mobius.yaml`, read once into one model. Its `services` and
//! `environments` are the deploy stage's ([`DeliveryConfig`]); its `monitoring` is the
//! monitor's ([`ProjectMonitoring`]). The file is one unit: a problem anywhere makes
//! the whole commit's file invalid, and every problem is reported together.

#![forbid(unsafe_code)]

use mobius_code::git::GitError;
use mobius_config::{yaml, Checker, Diagnostic, FileErrors, SourceFile};
use mobius_deploy::DeliveryConfig;
use mobius_monitor::project::ProjectMonitoring;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The file's name, at the repository root.
pub const FILE_NAME: &str = mobius_deploy::config::FILE_NAME;

/// Everything a project's `mobius.yaml` declares, checked.
#[derive(Debug, Clone)]
pub struct ProjectFile {
    /// Services and environments (`mobius-deploy` reads them).
    pub delivery: Arc<DeliveryConfig>,
    /// The `monitoring` section, scoped to the project (`mobius-monitor` reads it);
    /// `None` without one.
    pub monitoring: Option<Arc<ProjectMonitoring>>,
}

/// Why a commit's `mobius.yaml` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The repository could not be read at that commit.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The file is there and wrong: every problem, with its position.
    #[error("{}", .0.render(false))]
    Invalid(FileErrors),
}

/// Parses `file` (the `mobius.yaml` of `project`) once, checking every section.
pub fn parse(file: SourceFile, project: &str) -> Result<ProjectFile, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(FileErrors { file, diagnostics: vec![Diagnostic::new(e.pos, e.message)] }),
    };
    let mut diagnostics = Vec::new();
    let delivery = mobius_deploy::config::delivery(&root, &mut diagnostics);
    let monitoring = root.get("monitoring").map(|section| {
        let mut checker = Checker::default();
        let monitoring = mobius_monitor::project::monitoring(&mut checker, section, project);
        diagnostics.append(&mut checker.diagnostics);
        monitoring
    });
    if !diagnostics.is_empty() {
        // One report: the delivery's problems (in the order its checks find them),
        // then the monitoring's.
        return Err(FileErrors { file, diagnostics });
    }
    Ok(ProjectFile { delivery: Arc::new(delivery), monitoring: monitoring.map(Arc::new) })
}

/// The `mobius.yaml` of the repository in `dir` at a commit or ref; `Ok(None)` when
/// the commit has none. Reads git: call it off the async runtime.
pub fn read_at(dir: &Path, commit: &str, project: &str) -> Result<Option<ProjectFile>, ReadError> {
    let Some(text) = mobius_code::git::file_at(dir, commit, FILE_NAME)? else { return Ok(None) };
    parse(SourceFile::new(FILE_NAME, text), project).map(Some).map_err(ReadError::Invalid)
}

/// The files read lately, by project and commit, so every stage reading one commit's
/// `mobius.yaml` shares one parse. Only full commit ids are kept (a branch moves);
/// a file that cannot be read from git is not kept (the next read tries again).
#[derive(Debug)]
pub struct ProjectFiles {
    capacity: usize,
    entries: Mutex<VecDeque<(Key, Parsed)>>,
}

type Key = (String, String);
type Parsed = Result<Option<Arc<ProjectFile>>, FileErrors>;

impl Default for ProjectFiles {
    fn default() -> Self {
        ProjectFiles::with_capacity(64)
    }
}

impl ProjectFiles {
    /// A cache of the last `capacity` commits' files.
    pub fn with_capacity(capacity: usize) -> Self {
        ProjectFiles { capacity: capacity.max(1), entries: Mutex::new(VecDeque::new()) }
    }

    /// `project`'s `mobius.yaml` at `commit` in the repository in `dir`, parsed at most
    /// once per commit. Reads git: call it off the async runtime.
    pub fn read_at(&self, dir: &Path, commit: &str, project: &str) -> Result<Option<Arc<ProjectFile>>, ReadError> {
        self.cached(commit, project, || match read_at(dir, commit, project) {
            Ok(file) => Ok(Ok(file.map(Arc::new))),
            Err(ReadError::Invalid(errors)) => Ok(Err(errors)),
            Err(e @ ReadError::Git(_)) => Err(e),
        })
    }

    fn cached(
        &self,
        commit: &str,
        project: &str,
        read: impl FnOnce() -> Result<Parsed, ReadError>,
    ) -> Result<Option<Arc<ProjectFile>>, ReadError> {
        let is_commit_id = commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit());
        let key = (project.to_string(), commit.to_ascii_lowercase());
        if is_commit_id {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, parsed)) = entries.iter().find(|(k, _)| *k == key) {
                return parsed.clone().map_err(ReadError::Invalid);
            }
        }
        let parsed = read()?;
        if is_commit_id {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if !entries.iter().any(|(k, _)| *k == key) {
                if entries.len() >= self.capacity {
                    entries.pop_front();
                }
                entries.push_back((key, parsed.clone()));
            }
        }
        parsed.map_err(ReadError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_parsed_once_for_every_reader_and_a_branch_every_time() {
        let files = ProjectFiles::with_capacity(2);
        let parses = std::cell::Cell::new(0);
        let read = || {
            parses.set(parses.get() + 1);
            Ok(Ok(Some(Arc::new(parse(SourceFile::new(FILE_NAME, "services: {}\n"), "shop").unwrap()))))
        };
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let first = files.cached(sha, "shop", read).unwrap().unwrap();
        let again = files.cached(sha, "shop", read).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second reader got its own parse");
        assert_eq!(parses.get(), 1);
        // Another project at the same commit, and a branch name, are read again.
        files.cached(sha, "other", read).unwrap();
        files.cached("refs/heads/main", "shop", read).unwrap();
        files.cached("refs/heads/main", "shop", read).unwrap();
        assert_eq!(parses.get(), 4);
        // The cache is bounded: a third commit pushes out the oldest.
        files.cached(&sha.replace('0', "f"), "shop", read).unwrap();
        files.cached(sha, "shop", read).unwrap();
        assert_eq!(parses.get(), 6);
        // Problems are kept too: an invalid file is not parsed again.
        let bad = "fedcba9876543210fedcba9876543210fedcba98";
        let invalid = || {
            parses.set(parses.get() + 1);
            Ok(Err(parse(SourceFile::new(FILE_NAME, "nothing: here\n"), "shop").unwrap_err()))
        };
        assert!(matches!(files.cached(bad, "shop", invalid), Err(ReadError::Invalid(_))));
        assert!(matches!(files.cached(bad, "shop", invalid), Err(ReadError::Invalid(_))));
        assert_eq!(parses.get(), 7);
    }

    #[test]
    fn one_parse_gives_both_stages_their_part() {
        let text = "services:
  web: { artifact: web, run: 'web --port {port}' }
environments:
  prod: { listen: 127.0.0.1:9000 }
monitoring:
  rules:
    groups:
      - name: web
        rules: [ { alert: Down, expr: up == 0 } ]
";
        let file = parse(SourceFile::new(FILE_NAME, text), "shop").unwrap();
        assert_eq!(file.delivery.services["web"].run, "web --port {port}");
        assert_eq!(file.delivery.environments["prod"].listen["web"].port(), 9000);
        let monitoring = file.monitoring.unwrap();
        assert_eq!(monitoring.project, "shop");
        assert_eq!(monitoring.groups[0].rules[0].name, "Down");
    }

    #[test]
    fn problems_in_every_section_come_together() {
        let text = "services:
  web: { artifact: web, run: 'web --port {port}', colour: red }
monitoring:
  rules:
    groups:
      - name: web
        rules: [ { alert: Down, expr: 'up ==', for: soon } ]
environments:
  prod: { listen: nowhere }
";
        let err = parse(SourceFile::new(FILE_NAME, text), "shop").unwrap_err();
        let lines: Vec<usize> = err.diagnostics.iter().map(|d| d.pos.line).collect();
        assert!(lines.contains(&2) && lines.contains(&7) && lines.contains(&9), "{}", err.render(false));
    }

    #[test]
    fn a_file_without_monitoring_has_none() {
        let file = parse(SourceFile::new(FILE_NAME, "services: {}\n"), "shop").unwrap();
        assert!(file.monitoring.is_none());
        assert!(file.delivery.services.is_empty());
    }
}
