//! A git smart-HTTP server on loopback for tests: Debian git's `git-http-backend`
//! behind Python's CGI server, serving the repositories under a folder at
//! `/cgi-bin/git/PATH`, optionally only to a client with a basic-auth password.
#![allow(clippy::unwrap_used)] // reason: a test fails loudly on any unexpected error

/// The server; stopped when dropped.
pub struct HttpGit {
    child: std::process::Child,
    pub port: u16,
    /// The CGI folder, removed when the server stops.
    _site: tempfile::TempDir,
}

/// Python's CGI server on loopback, at the port given as its first argument; with a
/// second, a request whose `Authorization` header differs is answered 401 (a CGI
/// script cannot set the status under Python's server).
const CGI_SERVER: &str = "import http.server, sys
expected = sys.argv[2] if len(sys.argv) > 2 else None
class Handler(http.server.CGIHTTPRequestHandler):
    have_fork = False
    def allowed(self):
        if expected is None or self.headers.get('Authorization') == expected:
            return True
        self.send_response(401)
        self.send_header('WWW-Authenticate', 'Basic realm=\"git\"')
        self.send_header('Content-Length', '0')
        self.end_headers()
        return False
    def do_GET(self):
        if self.allowed():
            super().do_GET()
    def do_POST(self):
        if self.allowed():
            super().do_POST()
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
";

impl HttpGit {
    /// Serves the repositories under `parent`; with `password`, a request without
    /// basic credentials `x-access-token:PASSWORD` is answered 401. `None` (after a printed reason)
    /// when git-http-backend or python3 is missing; under CI that fails instead.
    pub fn start(parent: &std::path::Path, password: Option<&str>) -> Option<HttpGit> {
        let backend = std::path::Path::new("/usr/lib/git-core/git-http-backend");
        let python = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
        if !backend.exists() || !python {
            assert!(std::env::var("CI").is_err(), "git-http-backend and python3 are required under CI");
            eprintln!("skipped: git-http-backend (Debian's git) or python3 is missing");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().to_path_buf();
        let cgi = site.join("cgi-bin");
        std::fs::create_dir_all(&cgi).unwrap();
        let script = cgi.join("git");
        let expected = password.map(|p| {
            use base64::Engine;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{p}")))
        });
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexport GIT_PROJECT_ROOT='{}' GIT_HTTP_EXPORT_ALL=1\nexec {}\n",
                parent.display(),
                backend.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("python3")
            // Without fork, Python runs the CGI as the current user (with fork, as nobody).
            .args(["-W", "ignore", "-c", CGI_SERVER, &port.to_string()])
            .args(expected.iter())
            .current_dir(&site)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the CGI server never listened");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(HttpGit { child, port, _site: dir })
    }

    /// The base URL: repositories are at `URL/PATH`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/git", self.port)
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
