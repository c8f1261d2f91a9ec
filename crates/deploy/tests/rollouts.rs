//! Rollouts against a real host agent, real service processes (Python) and open-loop
//! load on loopback: the acceptance scenarios of release-and-deploy.
#![allow(clippy::unwrap_used)]

use mobius_config::SourceFile;
use mobius_deploy::agent::{run_agent, AgentClient};
use mobius_deploy::config::{parse_delivery, Environment, Service};
use mobius_deploy::rollout::{drive, Command, Phase, RolloutSpec, RolloutStatus, Target, Update};
use mobius_router::{ListenerConfig, VersionConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn python_available() -> bool {
    let found = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "python3 is required under CI");
        eprintln!("skipped: python3 is not installed");
    }
    found
}

struct Host {
    _dir: tempfile::TempDir,
    root: PathBuf,
    agent: AgentClient,
}

impl Drop for Host {
    fn drop(&mut self) {
        // The agent ran inside this test process, so it never stopped its instances:
        // kill every process working in this host's directory.
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&self.root)) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

async fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let agent_dir = root.join("agent");
    let task_dir = agent_dir.clone();
    tokio::spawn(async move {
        run_agent(&task_dir, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    });
    let started = Instant::now();
    let agent = loop {
        if let Some(a) = AgentClient::connect(&agent_dir).await {
            break a;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "agent did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Host { _dir: dir, root, agent }
}

/// An unpacked "release": the test service with its failure ratio baked into `run`.
fn release(root: &Path, version: &str) -> Target {
    let dir = root.join("releases").join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream.py"), dir.join("upstream.py")).unwrap();
    Target { version: version.to_string(), dir, image: None }
}

/// A port for a listener bound later: below the kernel's ephemeral range (32768 and
/// up), so no connection or port-0 bind in the meantime can take it, and free now.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
        ^ u64::from(std::process::id()) << 20;
    loop {
        let n = seed.wrapping_add(NEXT.fetch_add(7919, Ordering::Relaxed)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let port = 20_000 + (n % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Parses a mobius.yaml for the test service with the given environment body.
fn config(fail_ratio: f64, instances: u32, environment: &str) -> (Service, Environment) {
    let text = format!(
        "services:\n  web:\n    run: python3 upstream.py {{port}}\n    env: {{ FAIL_RATIO: '{fail_ratio}' }}\n    instances: {instances}\n    health: {{ path: /healthz, interval: 200ms }}\n    stop_grace: 2s\n    drain_timeout: 2s\nenvironments:\n  prod:\n{environment}"
    );
    let parsed = parse_delivery(SourceFile::new("mobius.yaml", text)).unwrap_or_else(|e| panic!("{}", e.render(false)));
    (parsed.services["web"].clone(), parsed.environments["prod"].clone())
}

struct Running {
    commands: mpsc::UnboundedSender<Command>,
    statuses: Arc<Mutex<Vec<(Instant, RolloutStatus)>>>,
    done: tokio::task::JoinHandle<Phase>,
}

fn start(host: &Host, id: i64, service: Service, environment: Environment, target: Target) -> Running {
    let (commands, rx) = mpsc::unbounded_channel();
    let (tx, mut updates) = mpsc::unbounded_channel::<Update>();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&statuses);
    let collector = tokio::spawn(async move {
        while let Some(u) = updates.recv().await {
            sink.lock().unwrap().push((Instant::now(), u.status));
        }
    });
    let spec = RolloutSpec {
        id,
        service,
        environment,
        target,
        needs_approval: false,
        stable_dir: None,
        metrics: None,
        clock: Arc::new(mobius_core::SystemClock),
    };
    let agent = host.agent.clone();
    // `done` resolves once every status the rollout sent has been collected.
    let done = tokio::spawn(async move {
        let phase = drive(agent, spec, rx, tx).await;
        let _ = collector.await;
        phase
    });
    Running { commands, statuses, done }
}

#[derive(Debug, Clone)]
struct Outcome {
    started: Instant,
    ended: Instant,
    status: Option<u16>,
    version: String,
}

/// Open-loop load: `rate` requests per second whatever the answers take; every tenth
/// request is a slow one.
fn load(addr: SocketAddr, rate: u32) -> (Arc<Mutex<Vec<Outcome>>>, tokio::task::JoinHandle<()>) {
    let results = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&results);
    let task = tokio::spawn(async move {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n = 0u64;
        loop {
            tick.tick().await;
            n += 1;
            let path = if n.is_multiple_of(10) { "/slow" } else { "/" };
            let request = client.get(format!("http://{addr}{path}")).send();
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = match request.await {
                    Ok(r) => Outcome {
                        started,
                        ended: Instant::now(),
                        status: Some(r.status().as_u16()),
                        version: r
                            .headers()
                            .get("x-mobius-version")
                            .map(|v| v.to_str().unwrap_or_default().to_string())
                            .unwrap_or_default(),
                    },
                    Err(_) => Outcome { started, ended: Instant::now(), status: None, version: String::new() },
                };
                sink.lock().unwrap().push(outcome);
            });
        }
    });
    (results, task)
}

async fn deploy_first(host: &Host, listen: SocketAddr, version: &str) {
    let (service, environment) = config(0.0, 2, &format!("    listen: {listen}\n    strategy: recreate\n"));
    let target = release(&host.root, version);
    let running = start(host, 1, service, environment, target);
    assert_eq!(running.done.await.unwrap(), Phase::Succeeded);
}

/// Starts rollout 2, of release v2, with a canary strategy of these steps.
fn canary(host: &Host, listen: SocketAddr, fail_ratio: f64, instances: u32, steps: &str) -> Running {
    let (service, environment) = config(
        fail_ratio,
        instances,
        &format!("    listen: {listen}\n    strategy: {{ canary: {{ steps: [ {steps} ] }} }}\n"),
    );
    start(host, 2, service, environment, release(&host.root, "v2"))
}

fn last(statuses: &Mutex<Vec<(Instant, RolloutStatus)>>) -> RolloutStatus {
    statuses.lock().unwrap().last().unwrap().1.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_canary_is_taken_out_within_five_seconds_and_stable_requests_see_no_error() {
    if !python_available() {
        return;
    }
    let host = host().await;
    let listen = free_addr();
    deploy_first(&host, listen, "v1").await;
    let (results, load_task) = load(listen, 100);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let running = canary(&host, listen, 0.2, 1, "{ weight: 10, pause: 60s }");
    let phase = tokio::time::timeout(Duration::from_secs(30), running.done).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    load_task.abort();
    assert_eq!(phase, Phase::RolledBack);
    let statuses = running.statuses.lock().unwrap().clone();
    let final_status = &statuses.last().unwrap().1;
    assert!(final_status.message.contains("error ratio"), "{}", final_status.message);
    let results = results.lock().unwrap().clone();
    let first_canary =
        results.iter().filter(|o| o.version == "v2").map(|o| o.started).min().expect("the canary received traffic");
    let weight_zero = statuses
        .iter()
        .find(|(_, s)| s.weights.get("v2") == Some(&0))
        .map(|(at, _)| *at)
        .expect("the canary's weight went to 0");
    let reaction = weight_zero.duration_since(first_canary);
    eprintln!("canary weight 0 after {reaction:?} from its first request");
    assert!(reaction < Duration::from_secs(5), "took {reaction:?}");
    let stable_errors = results.iter().filter(|o| o.version == "v1" && o.status != Some(200)).count();
    assert_eq!(stable_errors, 0, "requests routed to the stable version all succeeded");
    assert_eq!(results.iter().filter(|o| o.status.is_none()).count(), 0, "no connection failed");
    // The canary's instances are gone; the stable ones serve alone.
    let instances = host.agent.instances().await.unwrap();
    assert!(instances.iter().all(|i| i.version == "v1"), "{instances:?}");
    let response = reqwest::get(format!("http://{listen}/")).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_is_promoted_step_by_step() {
    if !python_available() {
        return;
    }
    let host = host().await;
    let listen = free_addr();
    deploy_first(&host, listen, "v1").await;
    let (results, load_task) = load(listen, 100);
    let running = canary(&host, listen, 0.0, 2, "{ weight: 20, pause: 1s }, { weight: 50, pause: 1s }");
    let phase = tokio::time::timeout(Duration::from_secs(30), running.done).await.unwrap().unwrap();
    load_task.abort();
    // Let the last requests and status updates arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(phase, Phase::Succeeded, "{:?}", last(&running.statuses));
    let statuses = running.statuses.lock().unwrap().clone();
    let weights: Vec<u32> = statuses.iter().filter_map(|(_, s)| s.weights.get("v2").copied()).collect();
    assert!(weights.contains(&20) && weights.contains(&50) && weights.last() == Some(&100), "{weights:?}");
    let results = results.lock().unwrap().clone();
    let failed: Vec<&Outcome> = results.iter().filter(|o| o.status != Some(200)).collect();
    assert!(failed.is_empty(), "failed during the rollout: {failed:?}");
    let instances = host.agent.instances().await.unwrap();
    assert_eq!(instances.len(), 2);
    assert!(instances.iter().all(|i| i.version == "v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_without_traffic_never_promotes_and_abort_rolls_back_while_holding() {
    if !python_available() {
        return;
    }
    let host = host().await;
    let listen = free_addr();
    deploy_first(&host, listen, "v1").await;
    let running = canary(&host, listen, 0.0, 1, "{ weight: 50, pause: 200ms }");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = last(&running.statuses);
    assert_eq!(status.phase, Phase::Progressing);
    assert!(status.message.contains("no verdict yet"), "{}", status.message);
    assert_eq!(status.weights.get("v2"), Some(&50), "still at its first step");
    running.commands.send(Command::Abort("tester".into())).unwrap();
    let phase = tokio::time::timeout(Duration::from_secs(10), running.done).await.unwrap().unwrap();
    assert_eq!(phase, Phase::RolledBack);
    assert!(last(&running.statuses).message.contains("aborted by tester"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_canary_instance_costs_no_idempotent_request_and_rolls_back() {
    if !python_available() {
        return;
    }
    let host = host().await;
    let listen = free_addr();
    deploy_first(&host, listen, "v1").await;
    let running = canary(&host, listen, 0.0, 1, "{ weight: 50, pause: 60s }");
    // Wait for the canary to take traffic.
    let started = Instant::now();
    let canary_weight = || {
        let statuses = running.statuses.lock().unwrap();
        statuses.last().and_then(|(_, s)| s.weights.get("v2").copied())
    };
    while canary_weight() != Some(50) {
        assert!(started.elapsed() < Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (results, load_task) = load(listen, 100);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let canary = host.agent.instances().await.unwrap().into_iter().find(|i| i.version == "v2").unwrap();
    // The shell and the service are one process group: kill -9 both.
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(canary.pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let phase = tokio::time::timeout(Duration::from_secs(15), running.done).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    load_task.abort();
    assert_eq!(phase, Phase::RolledBack);
    assert!(last(&running.statuses).message.contains("exited"), "{}", last(&running.statuses).message);
    let results = results.lock().unwrap().clone();
    let failed: Vec<&Outcome> = results.iter().filter(|o| o.status != Some(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} GETs failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
}

/// Twenty switches between two running versions under 500 requests/s: no failed
/// request, and none that began after a switch was acknowledged went to the old version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_under_load_lose_nothing() {
    if !python_available() {
        return;
    }
    let host = host().await;
    let listen = free_addr();
    let (service, environment) =
        config(0.0, 2, &format!("    listen: {listen}\n    strategy: {{ blue-green: {{ rollback_window: 1h }} }}\n"));
    let v1 = start(&host, 1, service.clone(), environment.clone(), release(&host.root, "blue"));
    assert_eq!(v1.done.await.unwrap(), Phase::Succeeded);
    let v2 = start(&host, 2, service, environment, release(&host.root, "green"));
    assert_eq!(v2.done.await.unwrap(), Phase::Succeeded, "{:?}", last(&v2.statuses));
    assert_eq!(last(&v2.statuses).weights.get("blue"), Some(&0), "blue kept warm at weight 0");
    let listeners = host.agent.listeners().await.unwrap();
    let table = listeners["prod.web"].config.clone();
    let backends = |v: &str| table.versions.iter().find(|x| x.version == v).unwrap().backends.clone();
    let (blue, green) = (backends("blue"), backends("green"));
    let (results, load_task) = load(listen, 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (switch asked, switch acknowledged, version switched to)
    let mut acks: Vec<(Instant, Instant, &str)> = Vec::new();
    for i in 0..20 {
        let (on, off) = if i % 2 == 0 { ("blue", "green") } else { ("green", "blue") };
        let config = ListenerConfig {
            listen,
            versions: vec![
                VersionConfig {
                    version: on.into(),
                    weight: 100,
                    backends: if on == "blue" { blue.clone() } else { green.clone() },
                },
                VersionConfig {
                    version: off.into(),
                    weight: 0,
                    backends: if off == "blue" { blue.clone() } else { green.clone() },
                },
            ],
            sticky: None,
            retries: 2,
        };
        let asked = Instant::now();
        host.agent.configure("prod.web", &config).await.unwrap();
        acks.push((asked, Instant::now(), on));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    load_task.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let results = results.lock().unwrap().clone();
    assert!(results.len() > 1500, "{} requests", results.len());
    let failed = results.iter().filter(|o| o.status != Some(200)).count();
    assert_eq!(failed, 0, "failed requests during switches");
    // A request that began after switch i was acknowledged, and was answered before
    // switch i+1 was asked for, must be served by the version of switch i. (One that
    // lasted into the next switch may rightly have reached the router after it.)
    let (mut wrong, mut checked) = (0, 0);
    for o in &results {
        let Some(i) = acks.iter().rposition(|(_, acked, _)| *acked <= o.started) else { continue };
        let before_next = acks.get(i + 1).is_none_or(|(asked, _, _)| o.ended < *asked);
        checked += usize::from(before_next);
        if before_next && o.version != acks[i].2 {
            wrong += 1;
            eprintln!(
                "switch {i} to {} acknowledged {:?} before a request that {} answered",
                acks[i].2,
                o.started.duration_since(acks[i].1),
                o.version
            );
        }
    }
    assert!(checked > 1000, "only {checked} requests fell between switches");
    assert_eq!(wrong, 0, "requests begun after a switch was acknowledged served by the old version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_replaces_instances_one_by_one_without_errors() {
    if !python_available() {
        return;
    }
    let host = host().await;
    let listen = free_addr();
    let (service, environment) = config(
        0.0,
        3,
        &format!("    listen: {listen}\n    strategy: {{ rolling: {{ max_surge: 1 }} }}\n    analysis: {{ interval: 200ms }}\n"),
    );
    let first = start(&host, 1, service.clone(), environment.clone(), release(&host.root, "v1"));
    assert_eq!(first.done.await.unwrap(), Phase::Succeeded);
    let (results, load_task) = load(listen, 100);
    let running = start(&host, 2, service, environment, release(&host.root, "v2"));
    let phase = tokio::time::timeout(Duration::from_secs(30), running.done).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    load_task.abort();
    assert_eq!(phase, Phase::Succeeded, "{:?}", last(&running.statuses));
    let messages: Vec<String> = running.statuses.lock().unwrap().iter().map(|(_, s)| s.message.clone()).collect();
    for n in 1..=3 {
        assert!(messages.contains(&format!("{n} of 3 instances on v2")), "{messages:?}");
    }
    let results = results.lock().unwrap().clone();
    let failed: Vec<&Outcome> = results.iter().filter(|o| o.status != Some(200)).collect();
    assert!(failed.is_empty(), "failed during the rolling update: {failed:?}");
    assert!(results.iter().any(|o| o.version == "v1") && results.iter().any(|o| o.version == "v2"));
    let instances = host.agent.instances().await.unwrap();
    assert_eq!(instances.len(), 3);
    assert!(instances.iter().all(|i| i.version == "v2"));
}

/// The longest run of failed requests (not 200) that started within `[from, to)`.
fn failure_window(results: &[Outcome], from: Instant, to: Instant) -> Duration {
    let failed: Vec<Instant> = results
        .iter()
        .filter(|o| o.started >= from && o.started < to && o.status != Some(200))
        .map(|o| o.started)
        .collect();
    match (failed.iter().min(), failed.iter().max()) {
        (Some(first), Some(last)) => last.duration_since(*first),
        _ => Duration::ZERO,
    }
}

/// Issue 15, item 11: a recreate whose controller dies (the server is killed) in the
/// middle of it is finished by the agent: the new version serves, and requests fail
/// for no longer than in the same recreate without the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreate_is_finished_by_the_agent_when_the_server_dies_in_the_middle() {
    if !python_available() {
        return;
    }
    let host = host().await;
    let listen = free_addr();
    deploy_first(&host, listen, "v1").await;
    let (results, load_task) = load(listen, 100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recreate = |id: i64, version: &str| {
        let (service, environment) = config(0.0, 2, &format!("    listen: {listen}\n    strategy: recreate\n"));
        start(&host, id, service, environment, release(&host.root, version))
    };

    // Without a crash.
    let baseline_from = Instant::now();
    let running = recreate(2, "v2");
    let phase = tokio::time::timeout(Duration::from_secs(30), running.done).await.unwrap().unwrap();
    assert_eq!(phase, Phase::Succeeded, "{:?}", last(&running.statuses));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline_to = Instant::now();

    // The controller dies once the agent holds the plan.
    let crash_from = Instant::now();
    let running = recreate(3, "v3");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !last_message_contains(&running.statuses, "the agent carries it out") {
        assert!(Instant::now() < deadline, "the recreate never started: {:?}", running.statuses.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.done.abort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let served = reqwest::get(format!("http://{listen}/")).await.ok();
        let body = match served {
            Some(r) if r.status() == 200 => r.text().await.unwrap_or_default(),
            _ => String::new(),
        };
        if body == "v3" {
            break;
        }
        assert!(Instant::now() < deadline, "v3 never served after the controller died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let crash_to = Instant::now();
    load_task.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let results = results.lock().unwrap().clone();
    let baseline = failure_window(&results, baseline_from, baseline_to);
    let crashed = failure_window(&results, crash_from, crash_to);
    eprintln!("failures lasted {baseline:?} without the crash, {crashed:?} with it");
    assert!(crashed <= baseline + Duration::from_millis(1000), "{crashed:?} with the crash, {baseline:?} without");
    let instances = host.agent.instances().await.unwrap();
    assert!(instances.iter().all(|i| i.version == "v3"), "{instances:?}");
}

fn last_message_contains(statuses: &Mutex<Vec<(Instant, RolloutStatus)>>, text: &str) -> bool {
    statuses.lock().unwrap().iter().any(|(_, s)| s.message.contains(text))
}

/// Whether the Docker Engine answers, with the test images (`.ci/images`) built.
fn docker_with_test_images() -> bool {
    let answers = std::process::Command::new("docker").arg("version").output().is_ok_and(|o| o.status.success());
    if !answers {
        assert!(std::env::var("CI").is_err(), "the Docker Engine is required under CI");
        eprintln!("skipped: the Docker Engine does not answer");
        return false;
    }
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/images");
    let built = std::process::Command::new(&images).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    true
}

/// `runtime: docker`: the same service in a container of Debian's Python, the release
/// mounted at /release.
fn docker_config(fail_ratio: f64, instances: u32, environment: &str) -> (Service, Environment) {
    let text = format!(
        "services:\n  web:\n    runtime: docker\n    image: mobius-test/python:3-1\n    run: python3 /release/upstream.py {{port}}\n    env: {{ FAIL_RATIO: '{fail_ratio}', BIND: 0.0.0.0 }}\n    resources: {{ cpus: 1, memory: 256m }}\n    instances: {instances}\n    health: {{ path: /healthz, interval: 200ms }}\n    stop_grace: 2s\n    drain_timeout: 2s\nenvironments:\n  prod:\n{environment}"
    );
    let parsed = parse_delivery(SourceFile::new("mobius.yaml", text)).unwrap_or_else(|e| panic!("{}", e.render(false)));
    (parsed.services["web"].clone(), parsed.environments["prod"].clone())
}

/// The instance ids of the containers of the agents under `root` (their
/// `dev.mobius.agent` label names the agent's directory).
fn instance_containers(root: &Path) -> Vec<String> {
    let format = "{{.Label \"dev.mobius.agent\"}} {{.Label \"dev.mobius.instance\"}}";
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--filter", "label=dev.mobius.agent", "--format", format])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(agent, _)| Path::new(agent).starts_with(root))
        .map(|(_, instance)| instance.to_string())
        .collect()
}

/// Issue 18: a canary of a `runtime: docker` service that fails is rolled back under
/// load, and no request routed to the stable containers fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_of_containers_is_rolled_back_under_load_without_a_stable_error() {
    if !docker_with_test_images() {
        return;
    }
    let host = host().await;
    let listen = free_addr();
    let (service, environment) = docker_config(0.0, 2, &format!("    listen: {listen}\n    strategy: recreate\n"));
    assert_eq!(service.image.as_deref(), Some("mobius-test/python:3-1"));
    assert_eq!(service.memory, Some(256 * 1024 * 1024));
    let first = start(&host, 1, service, environment, release(&host.root, "v1"));
    assert_eq!(first.done.await.unwrap(), Phase::Succeeded);
    let ours = |v: &str| instance_containers(&host.root).iter().filter(|c| c.contains(&format!(".{v}."))).count();
    assert_eq!(ours("v1"), 2, "two stable containers: {:?}", instance_containers(&host.root));
    let (results, load_task) = load(listen, 100);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (service, environment) = docker_config(
        0.2,
        1,
        &format!("    listen: {listen}\n    strategy: {{ canary: {{ steps: [ {{ weight: 10, pause: 60s }} ] }} }}\n"),
    );
    let running = start(&host, 2, service, environment, release(&host.root, "v2"));
    let phase = tokio::time::timeout(Duration::from_secs(60), running.done).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    load_task.abort();
    assert_eq!(phase, Phase::RolledBack);
    let results = results.lock().unwrap().clone();
    assert!(results.iter().any(|o| o.version == "v2"), "the canary container received traffic");
    let stable_errors = results.iter().filter(|o| o.version == "v1" && o.status != Some(200)).count();
    assert_eq!(stable_errors, 0, "requests routed to the stable containers all succeeded");
    assert_eq!(results.iter().filter(|o| o.status.is_none()).count(), 0, "no connection failed");
    assert_eq!(ours("v2"), 0, "the canary's container is removed: {:?}", instance_containers(&host.root));
    let response = reqwest::get(format!("http://{listen}/")).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "v1");
    // This agent runs inside the test and ends with it: its instances are stopped,
    // which removes their containers.
    for instance in host.agent.instances().await.unwrap() {
        host.agent.stop_instance(&instance.id, Duration::ZERO).await.unwrap();
    }
    assert_eq!(ours("v1"), 0, "stopping an instance removes its container: {:?}", instance_containers(&host.root));
}
