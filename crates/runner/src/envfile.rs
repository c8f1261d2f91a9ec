//! The environment files a step writes: `GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_STATE`
//! (`NAME=value` lines or `NAME<<DELIMITER` heredocs) and `GITHUB_PATH` (one directory per line).

use std::path::Path;

/// An error in an environment file, naming the file and line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: line {line}: {message}")]
pub struct EnvFileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Parses `NAME=value` and `NAME<<DELIM ... DELIM` entries, in order.
pub fn parse_key_values(text: &str, file: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), Some(h)) if e < h => {
                out.push((line[..e].to_string(), line[e + 1..].to_string()));
            }
            (Some(e), None) => out.push((line[..e].to_string(), line[e + 1..].to_string())),
            (_, Some(h)) => {
                let name = &line[..h];
                let delimiter = &line[h + 2..];
                if name.is_empty() || delimiter.is_empty() {
                    return Err(EnvFileError {
                        file: file.into(),
                        line: i,
                        message: format!("invalid heredoc header '{line}'"),
                    });
                }
                let start = i;
                let Some(end) = lines[i..].iter().position(|l| *l == delimiter).map(|p| p + i) else {
                    return Err(EnvFileError {
                        file: file.into(),
                        line: start,
                        message: format!("the value of '{name}' is never closed by its delimiter '{delimiter}'"),
                    });
                };
                out.push((name.to_string(), lines[start..end].join("\n")));
                i = end + 1;
            }
            (None, None) => {
                return Err(EnvFileError {
                    file: file.into(),
                    line: i,
                    message: format!("expected NAME=value or NAME<<DELIMITER, found '{line}'"),
                })
            }
        }
    }
    for (name, _) in &out {
        if name.trim().is_empty() {
            return Err(EnvFileError { file: file.into(), line: 0, message: "an entry has an empty name".into() });
        }
    }
    Ok(out)
}

/// Reads a key-value environment file; a missing file is empty.
pub fn read_key_values(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key_values(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(EnvFileError { file: path.display().to_string(), line: 0, message: e.to_string() }),
    }
}

/// Reads `GITHUB_PATH`: non-empty lines, in the order written.
pub fn read_paths(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_lines_and_heredocs() {
        let text = "KEY=value=another\nML<<EOF\na\nb\nEOF\nEMPTY=\n";
        let got = parse_key_values(text, "env").unwrap();
        assert_eq!(
            got,
            vec![("KEY".into(), "value=another".into()), ("ML".into(), "a\nb".into()), ("EMPTY".into(), String::new())]
        );
    }

    #[test]
    fn heredoc_body_may_look_like_assignments() {
        // act's parser bug: the body line must not become its own variable.
        let got = parse_key_values("test<<World\nx=Thats really Weird\nWorld\n", "env").unwrap();
        assert_eq!(got, vec![("test".into(), "x=Thats really Weird".into())]);
    }

    #[test]
    fn unterminated_heredoc_names_the_line() {
        let err = parse_key_values("A=1\nB<<EOF\nvalue\n", "env").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("never closed"));
    }
}
