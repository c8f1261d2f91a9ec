//! Jobs in containers and with services, against the real Docker Engine and the test
//! images `.ci/images` builds; what a cancelled or killed run leaves behind.
#![allow(clippy::unwrap_used)] // reason: a test fails loudly on any unexpected error

use crate::support::{docker_objects_of, require, require_docker, Test, BUSYBOX, DEBIAN, POSTGRES};
use std::time::{Duration, Instant};

#[test]
fn a_container_job_runs_its_steps_in_the_image_with_githubs_paths() {
    if !require_docker() {
        return;
    }
    let wf = format!(
        r#"on: push
jobs:
  inside:
    runs-on: ubuntu-latest
    container: {BUSYBOX}
    steps:
      - run: |
          echo "ws=$GITHUB_WORKSPACE home=$HOME temp=$RUNNER_TEMP pwd=$(pwd) event=$GITHUB_EVENT_PATH"
          cat committed.txt
          test -f "$GITHUB_EVENT_PATH" && echo event-readable
          test -e /bin/bash || echo no-ba""sh-here
          echo made > made-in-container.txt
          echo "FROM_ENV=carried" >> "$GITHUB_ENV"
          echo "/opt/extra" >> "$GITHUB_PATH"
      - run: |
          echo "env=$FROM_ENV path=$PATH"
          echo "ctx=${{{{ github.workspace }}}} temp=${{{{ runner.temp }}}}"
          cat made-in-container.txt
      - working-directory: ${{{{ github.workspace }}}}/sub
        run: echo "in=$(pwd)"
"#
    );
    let t = Test::new().workflow("c.yml", &wf).file("committed.txt", "from-the-repo\n").file("sub/keep", "").git();
    let out = t.run();
    out.code(0)
        .stdout_has("ws=/__w/")
        .stdout_has("home=/github/home temp=/__w/_temp")
        .stdout_has("event=/github/workflow/event.json")
        .stdout_has("from-the-repo")
        .stdout_has("event-readable")
        .stdout_has("no-bash-here")
        .stdout_has("env=carried path=/opt/extra:/usr/local/sbin")
        .stdout_has("ctx=/__w/")
        .stdout_has("temp=/__w/_temp")
        .stdout_has("made")
        .stdout_has("/sub");
    let name = t.dir().file_name().unwrap().to_string_lossy().to_string();
    out.stdout_has(&format!("pwd=/__w/{name}/{name}"));
}

#[test]
fn a_service_is_reachable_by_name_from_a_container_job_and_by_port_from_a_host_job() {
    if !require_docker() || !require("psql") {
        return;
    }
    let wf = format!(
        r#"on: push
jobs:
  in-container:
    runs-on: ubuntu-latest
    container: {POSTGRES}
    services:
      postgres:
        image: {POSTGRES}
        options: >-
          --health-cmd "pg_isready -h 127.0.0.1 -U postgres"
          --health-interval 200ms --health-retries 100
    steps:
      - run: |
          psql -h postgres -U postgres -c 'create table made_by_name (x int)'
          psql -h postgres -U postgres -Atc "select 'tables=' || count(*) from pg_tables where tablename = 'made_by_name'"
  on-host:
    runs-on: ubuntu-latest
    services:
      postgres:
        image: {POSTGRES}
        ports: [5432]
        options: --health-cmd "pg_isready -h 127.0.0.1 -U postgres" --health-interval 200ms --health-retries 100
    steps:
      - run: |
          echo "port=${{{{ job.services.postgres.ports[5432] }}}}"
          psql -h 127.0.0.1 -p ${{{{ job.services.postgres.ports[5432] }}}} -U postgres -c 'create table made_by_port (x int)'
"#
    );
    let out = Test::new().workflow("s.yml", &wf).run();
    out.code(0).stdout_has("tables=1").stdout_has("CREATE TABLE").stdout_has("Logs of service postgres");
    // The job waited for the health check: the first statement did not race the server.
    out.stdout_has("Service postgres is ready");
    let port = out.stdout().lines().find_map(|l| l.split("| port=").nth(1).map(str::to_string)).unwrap_or_default();
    assert!(port.trim().parse::<u16>().is_ok_and(|p| p > 0), "a published port: {port:?}");
}

#[test]
fn a_job_fails_naming_an_unhealthy_service_and_its_last_check() {
    if !require_docker() {
        return;
    }
    let wf = format!(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    services:
      db:
        image: {POSTGRES}
        options: --health-cmd "echo checked-and-fa""iled; exit 1" --health-interval 100ms --health-retries 2
    steps:
      - run: echo never-ru""ns
"#
    );
    let out = Test::new().workflow("u.yml", &wf).run();
    out.code(1).stdout_has("service 'db' is unhealthy: checked-and-failed").stdout_lacks("never-runs");
}

#[test]
fn a_bad_container_definition_fails_the_job_naming_the_field() {
    let wf = format!(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    container:
      image: {BUSYBOX}
      options: --health-cmd true --pid host
    steps:
      - run: echo never-ru""ns
"#
    );
    // Needs no engine: the definition is refused before anything is created.
    let t = Test::new().workflow("b.yml", &wf);
    if !require_docker() {
        return;
    }
    t.run().code(1).stderr_has("container.options: '--pid' is not supported").stdout_lacks("never-runs");
}

#[test]
fn a_run_that_needs_docker_without_an_engine_stops_before_any_job() {
    let wf = r#"on: push
jobs:
  first:
    runs-on: ubuntu-latest
    steps:
      - run: echo host-job-ra""n
  boxed:
    runs-on: ubuntu-latest
    container: debian:12
    steps:
      - run: echo inside
"#;
    let out = Test::new().workflow("n.yml", wf).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").run();
    out.code(2).stdout_lacks("host-job-ran");
    out.stderr_has(".github/workflows/n.yml:9:16: job 'boxed' uses 'container:', which needs the Docker Engine");
    out.stderr_has("/nonexistent/docker.sock");
}

#[test]
fn a_platform_image_runs_the_jobs_of_its_label_in_a_container() {
    if !require_docker() {
        return;
    }
    let wf = r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo "ws=$GITHUB_WORKSPACE"
"#;
    let platform = format!("ubuntu-latest={BUSYBOX}");
    Test::new().workflow("p.yml", wf).args(&["-P", &platform]).run().code(0).stdout_has("ws=/__w/");
}

/// Kills the mobius child if a test fails before it ends, so no run outlives the test.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = self.0.wait();
        }
    }
}

fn wait_for(what: &str, deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A job container and a service (PostgreSQL, which keeps running), and the marker
/// file its first step leaves when both are up.
fn long_job() -> Test {
    let wf = format!(
        r#"on: push
jobs:
  long:
    runs-on: ubuntu-latest
    container: {BUSYBOX}
    services:
      side:
        image: {POSTGRES}
    steps:
      - run: touch "$GITHUB_WORKSPACE/started" && sleep 300
"#
    );
    Test::new().workflow("long.yml", &wf)
}

#[test]
fn cancelling_a_container_job_removes_its_containers_and_network() {
    if !require_docker() {
        return;
    }
    let t = long_job();
    let mut child =
        Reap(t.command().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap());
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = t.state.path().to_path_buf();
    wait_for("the step to start", deadline, || walkdir_has(&state, "started"));
    assert!(
        docker_objects_of(pid).len() >= 3,
        "a job container, a service and a network: {:?}",
        docker_objects_of(pid)
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    wait_for("mobius to stop", deadline, || child.0.try_wait().unwrap().is_some());
    assert_eq!(docker_objects_of(pid), Vec::<String>::new(), "Ctrl-C left Docker objects behind");
}

#[test]
fn what_a_killed_run_left_behind_is_removed_at_the_next_start() {
    if !require_docker() {
        return;
    }
    let t = long_job();
    let mut child =
        t.command().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = t.state.path().to_path_buf();
    wait_for("the step to start", deadline, || walkdir_has(&state, "started"));
    child.kill().unwrap();
    child.wait().unwrap();
    let left = docker_objects_of(pid);
    assert!(left.len() >= 3, "kill -9 leaves the job's objects until the next start: {left:?}");
    let next = format!("on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    container: {BUSYBOX}\n    steps:\n      - run: echo next\n");
    Test::new().workflow("next.yml", &next).run().code(0);
    assert_eq!(docker_objects_of(pid), Vec::<String>::new(), "the next start removes what a dead run left");
}

fn walkdir_has(dir: &std::path::Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.filter_map(Result::ok).any(|e| {
        let p = e.path();
        p.file_name().is_some_and(|n| n == name) || (p.is_dir() && walkdir_has(&p, name))
    })
}

#[test]
fn a_docker_uri_step_runs_the_image_with_its_args_and_githubs_paths() {
    if !require_docker() {
        return;
    }
    let wf = format!(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: docker://{BUSYBOX}
        with:
          args: sh -c "echo \"ws=$GITHUB_WORKSPACE home=$HOME input=$INPUT_FLAVOUR\"; cat committed.txt; echo CARRIED=yes >> $GITHUB_ENV"
          flavour: plain
      - run: echo "carried=$CARRIED"
      - uses: docker://{BUSYBOX}
        with:
          entrypoint: /bin/false
"#
    );
    let out = Test::new().workflow("d.yml", &wf).file("committed.txt", "from-the-repo\n").run();
    out.code(1)
        .stdout_has("ws=/github/workspace home=/github/home input=plain")
        .stdout_has("from-the-repo")
        .stdout_has("carried=yes")
        .stdout_has("Process completed with exit code 1.");
}

/// A vendored Docker action: built from its Dockerfile once per content, with inputs as
/// `INPUT_*`, `runs.args` over inputs, `runs.env`, outputs, and pre and post entrypoints
/// sharing state.
fn docker_action(t: Test) -> Test {
    let dir = "vendor/acme/greet@v1";
    t.file(
        &format!("{dir}/action.yml"),
        r#"name: greet
inputs:
  who: { default: world }
runs:
  using: docker
  image: Dockerfile
  args: ["hello ${{ inputs.who }}"]
  env:
    FROM_RUNS_ENV: env-${{ inputs.who }}
  pre-entrypoint: /pre.sh
  post-entrypoint: /post.sh
"#,
    )
    .file(
        &format!("{dir}/Dockerfile"),
        &format!("FROM {BUSYBOX}\nCOPY *.sh /\nRUN chmod +x /*.sh\nENTRYPOINT [\"/entry.sh\"]\n"),
    )
    .file(&format!("{dir}/pre.sh"), "#!/bin/sh\necho \"pre ran\"\necho from_pre=1 >> \"$GITHUB_STATE\"\n")
    .file(
        &format!("{dir}/entry.sh"),
        "#!/bin/sh\necho \"arg=$1 input=$INPUT_WHO env=$FROM_RUNS_ENV pwd=$(pwd)\"\necho \"greeting=hi $INPUT_WHO\" >> \"$GITHUB_OUTPUT\"\necho from_main=2 >> \"$GITHUB_STATE\"\n",
    )
    .file(&format!("{dir}/post.sh"), "#!/bin/sh\necho \"post ran main-state=$STATE_from_main\"\n")
}

const USES_GREET: &str = r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: acme/greet@v1
        id: g
        with: { who: mobius }
      - run: echo "output=${{ steps.g.outputs.greeting }}"
"#;

#[test]
fn a_dockerfile_action_is_built_once_and_runs_with_inputs_outputs_and_pre_and_post() {
    if !require_docker() {
        return;
    }
    let t = docker_action(Test::new().workflow("g.yml", USES_GREET));
    let vendor = t.dir().join("vendor").display().to_string();
    let t = t.args(&["--action-dir", &vendor]);
    let first = t.run();
    first
        .code(0)
        .stdout_has("pre ran")
        .stdout_has("arg=hello mobius input=mobius env=env-mobius pwd=/github/workspace")
        .stdout_has("output=hi mobius")
        .stdout_has("post ran main-state=2");
    // The image is cached by the action's content: the second run does not build.
    let second = t.run();
    second.code(0).stdout_has("output=hi mobius").stdout_lacks("Building mobius-action/");
}

#[test]
fn a_vendored_docker_action_without_an_engine_stops_the_run_before_any_job() {
    let wf = "on: push\njobs:\n  first:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo host-job-r\"\"an\n  second:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo earlier-step-r\"\"an\n      - uses: acme/greet@v1\n";
    let t = docker_action(Test::new().workflow("g.yml", wf));
    let vendor = t.dir().join("vendor").display().to_string();
    let out = t.args(&["--action-dir", &vendor]).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").run();
    out.code(2).stdout_lacks("host-job-ran").stdout_lacks("earlier-step-ran");
    out.stderr_has("g.yml:11:9: job 'second' uses 'acme/greet@v1', which needs the Docker Engine");
}

#[test]
fn a_javascript_action_in_a_container_job_runs_in_the_container_with_the_hosts_node() {
    if !require_docker() || !require("node") {
        return;
    }
    let wf = format!(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    container: {DEBIAN}
    steps:
      - uses: ./.github/actions/js
        id: js
        with: {{ who: container }}
      - run: echo "output=${{{{ steps.js.outputs.seen }}}}"
"#
    );
    let action = "name: js\ninputs:\n  who: { required: true }\nruns:\n  using: node20\n  main: index.js\n";
    let script = r#"const fs = require('fs');
const os = fs.readFileSync('/etc/os-release', 'utf8').match(/^ID=(.*)$/m)[1];
console.log(`node=${process.execPath} os=${os} cwd=${process.cwd()} who=${process.env.INPUT_WHO}`);
fs.appendFileSync(process.env.GITHUB_OUTPUT, `seen=${os}\n`);
"#;
    let out = Test::new()
        .workflow("js.yml", &wf)
        .file(".github/actions/js/action.yml", action)
        .file(".github/actions/js/index.js", script)
        .run();
    out.code(0).stdout_has("node=/__e/node/bin/node os=debian cwd=/__w/").stdout_has("who=container");
    out.stdout_has("output=debian");
}

#[test]
fn the_docker_build_step_builds_and_tags_an_image_without_the_socket() {
    if !require_docker() {
        return;
    }
    let tag = format!("mobius-test/built:{}", std::process::id());
    let wf = format!(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: mobius/docker-build@v1
        id: b
        with:
          context: app
          tags: {tag}, {tag}-again
          build-args: GREETING=built-with-args
      - run: echo "id=${{{{ steps.b.outputs.image-id }}}}"
      - uses: docker://{tag}-again
"#
    );
    let dockerfile =
        format!("FROM {BUSYBOX}\nARG GREETING\nRUN echo \"$GREETING\" > /greeting\nCMD [\"cat\", \"/greeting\"]\n");
    let out = Test::new().workflow("b.yml", &wf).file("app/Dockerfile", &dockerfile).run();
    out.code(0).stdout_has("id=sha256:").stdout_has("built-with-args");
    for t in [tag.clone(), format!("{tag}-again")] {
        let _ = std::process::Command::new("docker").args(["rmi", "-f", &t]).output();
    }
}

/// Debian's `docker-registry` on loopback, open or behind htpasswd (bcrypt) auth.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(user: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((name, password)) = user {
            let htpasswd = dir.path().join("htpasswd");
            let made = std::process::Command::new("htpasswd")
                .args(["-Bbc", htpasswd.to_str().unwrap(), name, password])
                .output()
                .unwrap();
            assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: mobius\n    path: {}\n", htpasswd.display()));
        }
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let child = std::process::Command::new("docker-registry")
            .args(["serve", path.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, port, _dir: dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn docker(args: &[&str], config: Option<&std::path::Path>) {
    let mut cmd = std::process::Command::new("docker");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn images_are_pulled_from_a_registry_with_credentials_from_the_job_or_dockers_config() {
    if !require_docker() || !require("docker-registry") || !require("htpasswd") {
        return;
    }
    let open = Registry::start(None);
    let private = Registry::start(Some(("ci", "pa55word")));
    let login = tempfile::tempdir().unwrap();
    let open_image = format!("127.0.0.1:{}/mobius/busy:{}", open.port, std::process::id());
    let private_image = format!("127.0.0.1:{}/mobius/busy:{}", private.port, std::process::id());
    docker(&["tag", BUSYBOX, &open_image], None);
    docker(&["push", &open_image], None);
    docker(&["login", "-u", "ci", "-p", "pa55word", &format!("127.0.0.1:{}", private.port)], Some(login.path()));
    docker(&["tag", BUSYBOX, &private_image], None);
    docker(&["push", &private_image], Some(login.path()));
    docker(&["rmi", &open_image, &private_image], None);
    let job = |image: &str, credentials: &str| {
        format!(
            "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    container:\n      image: {image}\n{credentials}    steps:\n      - run: echo inside-the-pulled-image\n"
        )
    };
    Test::new()
        .workflow("o.yml", &job(&open_image, ""))
        .run()
        .code(0)
        .stdout_has("Pulling")
        .stdout_has("inside-the-pulled-image");
    // Without credentials the private registry refuses, and the error names the image.
    let fresh = tempfile::tempdir().unwrap();
    Test::new()
        .workflow("p.yml", &job(&private_image, ""))
        .env("DOCKER_CONFIG", fresh.path().to_str().unwrap())
        .run()
        .code(1)
        .stdout_has(&format!("cannot pull '{private_image}'"));
    // With the job's credentials (a secret), it pulls.
    let credentials = "      credentials:\n        username: ci\n        password: ${{ secrets.REGISTRY }}\n";
    Test::new()
        .workflow("p.yml", &job(&private_image, credentials))
        .env("DOCKER_CONFIG", fresh.path().to_str().unwrap())
        .args(&["-s", "REGISTRY=pa55word"])
        .run()
        .code(0)
        .stdout_has("inside-the-pulled-image")
        .stdout_lacks("pa55word");
    docker(&["rmi", &private_image], None);
    // With Docker's own config (what `docker login` wrote), it pulls too.
    Test::new()
        .workflow("p.yml", &job(&private_image, ""))
        .env("DOCKER_CONFIG", login.path().to_str().unwrap())
        .run()
        .code(0)
        .stdout_has("inside-the-pulled-image");
    docker(&["rmi", &private_image], None);
    // --pull never refuses to fetch what the engine lacks.
    docker(&["rmi", &open_image], None);
    Test::new()
        .workflow("o.yml", &job(&open_image, ""))
        .args(&["--pull", "never"])
        .run()
        .code(1)
        .stdout_has("--pull never forbids pulling it");
}
