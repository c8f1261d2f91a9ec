//! `jobs.<id>.container` and `jobs.<id>.services.<id>` as evaluated values: the image,
//! credentials, env, ports, volumes and `options`, parsed like `docker create` flags.

use serde_json::Value;
use std::time::Duration;

/// One container a job asks for: its own (`container:`) or a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ContainerSpec {
    pub image: String,
    pub credentials: Option<Credentials>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<PortSpec>,
    /// `docker create -v` forms: `/path` (anonymous), `name:/path`, `/host:/path[:ro]`.
    pub volumes: Vec<String>,
    pub options: CreateOptions,
}

/// `credentials: { username, password }` for the image's registry.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// A port to publish: `C`, `H:C` or `IP:H:C`, each with an optional `/udp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortSpec {
    pub container: u16,
    pub protocol: String,
    /// A fixed host port, or a free one chosen by the engine.
    pub host: Option<u16>,
    pub host_ip: String,
}

impl PortSpec {
    /// Docker's key for the port: `5432/tcp`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container, self.protocol)
    }
}

/// The `docker create` flags a job's `options:` may give.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CreateOptions {
    pub health: Option<Health>,
    pub no_healthcheck: bool,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub entrypoint: Option<String>,
    pub hostname: Option<String>,
    pub network_aliases: Vec<String>,
    pub nano_cpus: Option<i64>,
    pub memory: Option<i64>,
    pub shm_size: Option<i64>,
    pub privileged: bool,
    pub init: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub tmpfs: Vec<(String, String)>,
    pub add_hosts: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub volumes: Vec<String>,
    pub workdir: Option<String>,
}

/// `--health-*` flags; absent fields keep the image's `HEALTHCHECK` values.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Health {
    pub cmd: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<i64>,
    pub start_period: Option<Duration>,
}

/// Why a `container:` or service definition cannot be used; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub(crate) struct SpecError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError { field: field.into(), message: message.into() }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads an evaluated `container:` (or one service) value. `None` for an empty image,
/// which GitHub runs on the host (`container: ${{ matrix.image }}` with an empty leg).
pub(crate) fn parse(value: &Value, field: &str) -> Result<Option<ContainerSpec>, SpecError> {
    let map = match value {
        Value::Null => return Ok(None),
        Value::String(image) if image.trim().is_empty() => return Ok(None),
        Value::String(image) => {
            return Ok(Some(ContainerSpec { image: image.trim().to_string(), ..Default::default() }))
        }
        Value::Object(map) => map,
        _ => return Err(err(field, "expected an image name or a mapping with 'image'")),
    };
    for key in map.keys() {
        if !["image", "credentials", "env", "ports", "volumes", "options"].contains(&key.as_str()) {
            return Err(err(
                format!("{field}.{key}"),
                "unknown key; expected image, credentials, env, ports, volumes or options",
            ));
        }
    }
    let image = match map.get("image") {
        None | Some(Value::Null) => String::new(),
        Some(v) => text(v).ok_or_else(|| err(format!("{field}.image"), "expected a string"))?,
    };
    if image.trim().is_empty() {
        return Ok(None);
    }
    let credentials = match map.get("credentials") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => {
            let get = |k: &str| c.get(k).and_then(text).unwrap_or_default();
            let (username, password) = (get("username"), get("password"));
            if username.is_empty() || password.is_empty() {
                return Err(err(format!("{field}.credentials"), "needs both 'username' and 'password'"));
            }
            Some(Credentials { username, password })
        }
        Some(_) => return Err(err(format!("{field}.credentials"), "expected a mapping")),
    };
    let env = match map.get("env") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(e)) => e.iter().map(|(k, v)| (k.clone(), text(v).unwrap_or_default())).collect(),
        Some(_) => return Err(err(format!("{field}.env"), "expected a mapping")),
    };
    let list = |key: &str| -> Result<Vec<String>, SpecError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| text(v).ok_or_else(|| err(format!("{field}.{key}[{i}]"), "expected a string")))
                .collect(),
            Some(_) => Err(err(format!("{field}.{key}"), "expected a list")),
        }
    };
    let ports = list("ports")?
        .iter()
        .enumerate()
        .map(|(i, p)| parse_port(p).map_err(|m| err(format!("{field}.ports[{i}]"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let volumes = list("volumes")?;
    for (i, v) in volumes.iter().enumerate() {
        check_volume(v).map_err(|m| err(format!("{field}.volumes[{i}]"), m))?;
    }
    let options = match map.get("options") {
        None | Some(Value::Null) => CreateOptions::default(),
        Some(v) => {
            let line = text(v).ok_or_else(|| err(format!("{field}.options"), "expected a string"))?;
            parse_options(&line).map_err(|m| err(format!("{field}.options"), m))?
        }
    };
    Ok(Some(ContainerSpec { image: image.trim().to_string(), credentials, env, ports, volumes, options }))
}

/// `5432`, `8080:80`, `127.0.0.1:8080:80`, each optionally `/udp` or `/tcp`.
pub(crate) fn parse_port(text: &str) -> Result<PortSpec, String> {
    let (body, protocol) = match text.trim().rsplit_once('/') {
        Some((b, p)) if ["tcp", "udp", "sctp"].contains(&p) => (b, p.to_string()),
        Some((_, p)) => return Err(format!("unknown protocol '{p}' in '{text}'; expected tcp, udp or sctp")),
        None => (text.trim(), "tcp".to_string()),
    };
    let number = |s: &str, what: &str| -> Result<u16, String> {
        s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("'{s}' in '{text}' is not a {what} port"))
    };
    let parts: Vec<&str> = body.split(':').collect();
    match parts.as_slice() {
        [c] => Ok(PortSpec { container: number(c, "container")?, protocol, host: None, host_ip: "127.0.0.1".into() }),
        [h, c] => Ok(PortSpec {
            container: number(c, "container")?,
            protocol,
            host: if h.is_empty() { None } else { Some(number(h, "host")?) },
            host_ip: "127.0.0.1".into(),
        }),
        [ip, h, c] => Ok(PortSpec {
            container: number(c, "container")?,
            protocol,
            host: if h.is_empty() { None } else { Some(number(h, "host")?) },
            host_ip: ip.to_string(),
        }),
        _ => Err(format!("'{text}' is not C, H:C or IP:H:C")),
    }
}

fn check_volume(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(':').collect();
    let target = match parts.as_slice() {
        [t] => t,
        [_, t] => t,
        [_, t, mode] => {
            if !mode.split(',').all(|m| ["ro", "rw", "z", "Z", "cached", "delegated", "consistent"].contains(&m)) {
                return Err(format!("unknown mode '{mode}' in '{v}'"));
            }
            t
        }
        _ => return Err(format!("'{v}' is not /path, name:/path or /host:/path[:ro]")),
    };
    if !target.starts_with('/') {
        return Err(format!("the container path in '{v}' must be absolute"));
    }
    Ok(())
}

/// Docker's sizes: `512m`, `1g`, `1048576`, `64k`.
fn parse_size(text: &str) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit() && *c != '.') {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let n: f64 = digits.parse().map_err(|_| format!("'{text}' is not a size"))?;
    let scale = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("'{text}' is not a size (use b, k, m or g)")),
    };
    Ok((n * scale) as i64)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("'{text}' is not a duration: {e}"))
}

fn key_value(text: &str) -> (String, String) {
    match text.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (text.to_string(), std::env::var(text).unwrap_or_default()),
    }
}

/// The flags Mobius understands in `options:`, for the error on any other.
const KNOWN_FLAGS: &str = "--health-cmd, --health-interval, --health-timeout, --health-retries, \
--health-start-period, --no-healthcheck, -e/--env, -u/--user, --entrypoint, -h/--hostname, --network-alias, \
--cpus, -m/--memory, --shm-size, --privileged, --init, --cap-add, --cap-drop, --tmpfs, --add-host, -l/--label, \
-v/--volume, -w/--workdir";

/// Parses `options:` as `docker create` would read them, quoting honoured:
/// `--health-cmd "pg_isready -h 127.0.0.1" --health-interval 1s --health-retries 30`.
pub(crate) fn parse_options(line: &str) -> Result<CreateOptions, String> {
    let words = shlex::split(line).ok_or_else(|| format!("a quote is not closed in '{line}'"))?;
    let mut opts = CreateOptions::default();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (word.clone(), None),
        };
        if !flag.starts_with('-') {
            return Err(format!("unexpected '{flag}': options are docker create flags ({KNOWN_FLAGS})"));
        }
        let boolean = ["--privileged", "--init", "--no-healthcheck"].contains(&flag.as_str());
        let value = if boolean {
            match inline.as_deref() {
                None | Some("true") => "true".to_string(),
                Some("false") => "false".to_string(),
                Some(other) => return Err(format!("{flag} takes true or false, not '{other}'")),
            }
        } else {
            match inline {
                Some(v) => v,
                None => {
                    let v = words.get(i).cloned().ok_or_else(|| format!("{flag} needs a value"))?;
                    i += 1;
                    v
                }
            }
        };
        let health = || Health::default();
        match flag.as_str() {
            "--health-cmd" => opts.health.get_or_insert_with(health).cmd = Some(value),
            "--health-interval" => opts.health.get_or_insert_with(health).interval = Some(parse_duration(&value)?),
            "--health-timeout" => opts.health.get_or_insert_with(health).timeout = Some(parse_duration(&value)?),
            "--health-start-period" => {
                opts.health.get_or_insert_with(health).start_period = Some(parse_duration(&value)?)
            }
            "--health-retries" => {
                opts.health.get_or_insert_with(health).retries =
                    Some(value.parse().map_err(|_| format!("--health-retries: '{value}' is not a number"))?)
            }
            "--no-healthcheck" => opts.no_healthcheck = value == "true",
            "-e" | "--env" => opts.env.push(key_value(&value)),
            "-u" | "--user" => opts.user = Some(value),
            "--entrypoint" => opts.entrypoint = Some(value),
            "-h" | "--hostname" => opts.hostname = Some(value),
            "--network-alias" => opts.network_aliases.push(value),
            "--cpus" => {
                let cpus: f64 = value.parse().map_err(|_| format!("--cpus: '{value}' is not a number"))?;
                opts.nano_cpus = Some((cpus * 1e9) as i64);
            }
            "-m" | "--memory" => opts.memory = Some(parse_size(&value)?),
            "--shm-size" => opts.shm_size = Some(parse_size(&value)?),
            "--privileged" => opts.privileged = value == "true",
            "--init" => opts.init = value == "true",
            "--cap-add" => opts.cap_add.push(value),
            "--cap-drop" => opts.cap_drop.push(value),
            "--tmpfs" => {
                let (path, mount) = value.split_once(':').unwrap_or((&value, ""));
                opts.tmpfs.push((path.to_string(), mount.to_string()));
            }
            "--add-host" => opts.add_hosts.push(value),
            "-l" | "--label" => opts.labels.push(key_value(&value)),
            "-v" | "--volume" => {
                check_volume(&value)?;
                opts.volumes.push(value)
            }
            "-w" | "--workdir" => opts.workdir = Some(value),
            other => return Err(format!("'{other}' is not supported; options may use {KNOWN_FLAGS}")),
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_keep_a_quoted_health_command_whole() {
        let o = parse_options(
            r#"--health-cmd "pg_isready -h 127.0.0.1" --health-interval 1s --health-retries=30 -e A=1 --cpus 1.5 -m 512m --init"#,
        )
        .expect("valid options");
        let h = o.health.expect("health");
        assert_eq!(h.cmd.as_deref(), Some("pg_isready -h 127.0.0.1"));
        assert_eq!(h.interval, Some(Duration::from_secs(1)));
        assert_eq!(h.retries, Some(30));
        assert_eq!(o.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(o.nano_cpus, Some(1_500_000_000));
        assert_eq!(o.memory, Some(512 * 1024 * 1024));
        assert!(o.init);
    }

    #[test]
    fn an_unknown_option_is_named() {
        let e = parse_options("--health-cmd true --pid host").expect_err("--pid is refused");
        assert!(e.contains("'--pid' is not supported"), "{e}");
        let e = parse_options("--health-retries").expect_err("missing value");
        assert!(e.contains("--health-retries needs a value"), "{e}");
        let e = parse_options("--health-cmd 'unclosed").expect_err("quote");
        assert!(e.contains("quote is not closed"), "{e}");
    }

    #[test]
    fn ports_take_every_form_docker_does() {
        let p = parse_port("5432").expect("port");
        assert_eq!((p.container, p.host, p.key()), (5432, None, "5432/tcp".to_string()));
        let p = parse_port("8080:80/udp").expect("port");
        assert_eq!((p.container, p.host, p.key()), (80, Some(8080), "80/udp".to_string()));
        let p = parse_port("0.0.0.0:9000:90").expect("port");
        assert_eq!((p.host_ip.as_str(), p.host), ("0.0.0.0", Some(9000)));
        assert!(parse_port("abc").unwrap_err().contains("not a container port"));
        assert!(parse_port("80/xyz").unwrap_err().contains("unknown protocol"));
    }

    #[test]
    fn a_container_is_an_image_or_a_mapping_and_an_empty_image_means_the_host() {
        assert_eq!(parse(&json!(""), "container"), Ok(None));
        assert_eq!(parse(&json!({"image": ""}), "container"), Ok(None));
        let s = parse(&json!("debian:12"), "container").expect("valid").expect("some");
        assert_eq!(s.image, "debian:12");
        let s = parse(
            &json!({"image": "pg", "env": {"A": 1}, "ports": [5432, "80:8080"], "volumes": ["/data"],
                    "credentials": {"username": "u", "password": "p"}, "options": "--health-cmd true"}),
            "services.pg",
        )
        .expect("valid")
        .expect("some");
        assert_eq!(s.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(s.ports.len(), 2);
        assert_eq!(s.credentials.expect("credentials").username, "u");
        let e = parse(&json!({"image": "pg", "port": [1]}), "services.pg").expect_err("unknown key");
        assert_eq!(e.field, "services.pg.port");
        let e = parse(&json!({"image": "pg", "volumes": ["rel:data"]}), "container").expect_err("relative");
        assert_eq!(e.field, "container.volumes[0]");
        let e = parse(&json!({"image": "pg", "credentials": {"username": "u"}}), "container").expect_err("password");
        assert!(e.message.contains("password"), "{e}");
    }
}
