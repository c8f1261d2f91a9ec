//! The runner's tool cache (`RUNNER_TOOL_CACHE`, `AGENT_TOOLSDIRECTORY`), filled from
//! toolchains the host already has, laid out as `actions/setup-*` look them up:
//! `TOOL/VERSION/x64/` and a `x64.complete` marker beside it. The entries link to the
//! host's files; nothing is copied or downloaded.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A toolchain the setup actions know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Python,
    Node,
    Go,
    Java,
}

impl std::str::FromStr for Tool {
    type Err = String;
    fn from_str(s: &str) -> Result<Tool, String> {
        match s {
            "python" => Ok(Tool::Python),
            "node" => Ok(Tool::Node),
            "go" => Ok(Tool::Go),
            "java" => Ok(Tool::Java),
            other => Err(format!("'{other}' is not a tool Mobius caches; expected python, node, go or java")),
        }
    }
}

/// Why a toolchain could not be added.
#[derive(Debug, thiserror::Error)]
pub enum ToolCacheError {
    #[error("no {program} on {where_}")]
    NotFound { program: String, where_: String },
    #[error("cannot ask {} for its version: {message}", program.display())]
    Probe { program: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// What was added: the tool's folder in the cache and its version.
#[derive(Debug, Clone)]
pub struct Added {
    pub dir: PathBuf,
    pub version: String,
}

fn find(program: &str, dir: Option<&Path>) -> Result<PathBuf, ToolCacheError> {
    let search: Vec<PathBuf> = match dir {
        Some(d) => vec![d.join("bin"), d.to_path_buf()],
        None => std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default(),
    };
    search.iter().map(|d| d.join(program)).find(|p| p.is_file()).ok_or_else(|| ToolCacheError::NotFound {
        program: program.into(),
        where_: dir.map_or("PATH".into(), |d| d.display().to_string()),
    })
}

fn probe(program: &Path, args: &[&str]) -> Result<String, ToolCacheError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| ToolCacheError::Probe { program: program.into(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(ToolCacheError::Probe {
            program: program.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    // java prints its properties on stderr.
    Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ToolCacheError + '_ {
    move |source| ToolCacheError::Io { path: path.to_path_buf(), source }
}

fn link(target: &Path, at: &Path) -> Result<(), ToolCacheError> {
    if at.symlink_metadata().is_ok() {
        std::fs::remove_file(at).map_err(io(at))?;
    }
    std::os::unix::fs::symlink(target, at).map_err(io(at))
}

/// `TOOL/VERSION/x64` made afresh, and its `x64.complete` marker.
fn entry(cache: &Path, name: &str, version: &str) -> Result<PathBuf, ToolCacheError> {
    let version_dir = cache.join(name).join(version);
    let dir = version_dir.join("x64");
    if dir.symlink_metadata().is_ok() {
        let removed = if dir.is_symlink() { std::fs::remove_file(&dir) } else { std::fs::remove_dir_all(&dir) };
        removed.map_err(io(&dir))?;
    }
    std::fs::create_dir_all(&version_dir).map_err(io(&version_dir))?;
    Ok(dir)
}

fn complete(dir: &Path) -> Result<(), ToolCacheError> {
    let marker = dir.with_extension("complete");
    std::fs::write(&marker, b"").map_err(io(&marker))
}

/// Adds the host's toolchain of `tool` (found on `PATH`, or under `path`) to the cache.
pub fn add(cache: &Path, tool: Tool, path: Option<&Path>) -> Result<Added, ToolCacheError> {
    match tool {
        Tool::Python => {
            let program = find("python3", path)?;
            let text = probe(
                &program,
                &[
                    "-c",
                    "import sys, platform; print(platform.python_version()); print(sys.prefix); print(sys.executable)",
                ],
            )?;
            let mut lines = text.lines();
            let (version, prefix, executable) = (
                lines.next().unwrap_or_default().trim().to_string(),
                PathBuf::from(lines.next().unwrap_or_default().trim()),
                PathBuf::from(lines.next().unwrap_or_default().trim()),
            );
            let dir = entry(cache, "Python", &version)?;
            let bin = dir.join("bin");
            std::fs::create_dir_all(&bin).map_err(io(&bin))?;
            let short = version.split('.').take(2).collect::<Vec<_>>().join(".");
            for name in ["python", "python3", &format!("python{short}")] {
                link(&executable, &bin.join(name))?;
            }
            for name in ["pip", "pip3", &format!("pip{short}")] {
                let host = prefix.join("bin").join(name);
                if host.is_file() {
                    link(&host, &bin.join(name))?;
                }
            }
            for sub in ["lib", "include"] {
                if prefix.join(sub).is_dir() {
                    link(&prefix.join(sub), &dir.join(sub))?;
                }
            }
            complete(&dir)?;
            Ok(Added { dir, version })
        }
        Tool::Node => {
            let program = find("node", path)?;
            let version = probe(&program, &["--version"])?.trim().trim_start_matches('v').to_string();
            let dir = entry(cache, "node", &version)?;
            let bin = dir.join("bin");
            std::fs::create_dir_all(&bin).map_err(io(&bin))?;
            let host_bin = program.parent().map(Path::to_path_buf).unwrap_or_default();
            link(&program, &bin.join("node"))?;
            for name in ["npm", "npx", "corepack"] {
                if host_bin.join(name).is_file() {
                    link(&host_bin.join(name), &bin.join(name))?;
                }
            }
            complete(&dir)?;
            Ok(Added { dir, version })
        }
        Tool::Go => {
            let program = find("go", path)?;
            let text = probe(&program, &["env", "GOROOT", "GOVERSION"])?;
            let mut lines = text.lines();
            let root = PathBuf::from(lines.next().unwrap_or_default().trim());
            let version = lines.next().unwrap_or_default().trim().trim_start_matches("go").to_string();
            let dir = entry(cache, "go", &version)?;
            link(&root, &dir)?;
            complete(&dir)?;
            Ok(Added { dir, version })
        }
        Tool::Java => {
            let program = find("java", path)?;
            let text = probe(&program, &["-XshowSettings:properties", "-version"])?;
            let property = |key: &str| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix(key).and_then(|r| r.trim().strip_prefix('=')))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let (home, version) = (PathBuf::from(property("java.home")), property("java.version"));
            // actions/setup-java looks for `Java_<Distribution>_jdk/<version>/x64`.
            let dir = entry(cache, "Java_Temurin-Hotspot_jdk", &version)?;
            link(&home, &dir)?;
            complete(&dir)?;
            Ok(Added { dir, version })
        }
    }
}
