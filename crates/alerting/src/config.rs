//! `alertmanager.yml`, read as Alertmanager reads it: `global`, the `route` tree
//! (matchers, `group_by`, timing, `continue`, inherited by child routes),
//! `receivers` (webhook, Slack, PagerDuty, email, Discord, Teams, Telegram), `inhibit_rules`, the
//! `templates` files and `time_intervals`. Keys Mobius does not act on yet are refused with their position.

use super::templates::NotificationTemplates;
use super::time_intervals::{self as ti, TimeInterval};
use mobius_config::yaml::{self, Node, Pos};
use mobius_config::Checker;
use mobius_config::{Diagnostic, FileErrors, SourceFile};
use mobius_series::labels::{Labels, MatchOp, Matcher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct AlertmanagerConfig {
    pub resolve_timeout: Duration,
    pub smtp: SmtpDefaults,
    pub slack_api_url: Option<String>,
    pub pagerduty_url: String,
    pub route: Route,
    pub receivers: Vec<Receiver>,
    pub inhibit_rules: Vec<InhibitRule>,
    /// The default notification templates and those of the `templates` files.
    pub templates: Arc<NotificationTemplates>,
    /// Named time intervals (`time_intervals` and `mute_time_intervals`).
    pub time_intervals: Vec<(String, Vec<TimeInterval>)>,
    /// `global.http_config`: what receivers use unless they have their own.
    pub http: HttpConfig,
}

impl AlertmanagerConfig {
    /// Whether `route`'s notifications are held at `now` (milliseconds): inside one
    /// of its mute intervals, or outside all of its active ones.
    pub fn muted_by_time(&self, route: &Route, now: i64) -> bool {
        let holds = |name: &String| {
            self.time_intervals.iter().any(|(n, entries)| n == name && entries.iter().any(|e| e.contains(now)))
        };
        route.mute_time_intervals.iter().any(holds)
            || (!route.active_time_intervals.is_empty() && !route.active_time_intervals.iter().any(holds))
    }
}

/// The `smtp_*` settings of `global`, used by email receivers that do not set them.
#[derive(Clone, Debug, Default)]
pub struct SmtpDefaults {
    pub from: Option<String>,
    pub smarthost: Option<String>,
    pub hello: Option<String>,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    pub require_tls: Option<bool>,
}

/// Which labels group alerts: a list, or every label (`...`).
#[derive(Clone, Debug, PartialEq)]
pub enum GroupBy {
    Labels(Vec<String>),
    All,
}

/// A node of the routing tree, with what it inherited already applied.
#[derive(Clone, Debug)]
pub struct Route {
    /// The route's position in the tree (`0`, `0.1`, `0.1.0`), naming its groups.
    pub id: String,
    pub receiver: String,
    pub group_by: GroupBy,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub routes: Vec<Route>,
    /// Named time intervals when this route sends nothing (not inherited).
    pub mute_time_intervals: Vec<String>,
    /// Named time intervals outside which this route sends nothing (not inherited).
    pub active_time_intervals: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Receiver {
    pub name: String,
    pub webhooks: Vec<WebhookConfig>,
    pub slack: Vec<SlackConfig>,
    pub pagerduty: Vec<PagerDutyConfig>,
    pub email: Vec<EmailConfig>,
    /// Discord, Microsoft Teams and Telegram.
    pub chat: Vec<ChatConfig>,
}

/// A chat service Alertmanager can post to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChatKind {
    Discord,
    Teams,
    Telegram,
}

/// A `discord_configs`, `msteams_configs` or `telegram_configs` entry.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    pub kind: ChatKind,
    /// Where to post: the webhook URL, or Telegram's `api_url`.
    pub url: String,
    pub send_resolved: bool,
    pub http: HttpConfig,
    /// The templated strings, Alertmanager's defaults unless set.
    pub texts: Vec<(&'static str, String)>,
    /// Telegram: the bot's token (it goes in the path), the chat, and whether to notify silently.
    pub bot_token: String,
    pub chat_id: i64,
    pub disable_notifications: bool,
}

impl ChatKind {
    /// The configuration key, the key of the URL, and the templated strings with their defaults.
    fn spec(self) -> (&'static str, &'static str, &'static [(&'static str, &'static str)]) {
        match self {
            ChatKind::Discord => (
                "discord_configs",
                "webhook_url",
                &[
                    ("title", r#"{{ template "discord.default.title" . }}"#),
                    ("message", r#"{{ template "discord.default.message" . }}"#),
                ],
            ),
            ChatKind::Teams => (
                "msteams_configs",
                "webhook_url",
                &[
                    ("title", r#"{{ template "msteams.default.title" . }}"#),
                    ("summary", r#"{{ template "msteams.default.summary" . }}"#),
                    ("text", r#"{{ template "msteams.default.text" . }}"#),
                ],
            ),
            ChatKind::Telegram => (
                "telegram_configs",
                "api_url",
                &[("message", r#"{{ template "telegram.default.message" . }}"#), ("parse_mode", "HTML")],
            ),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub send_resolved: bool,
    pub max_alerts: usize,
    pub http: HttpConfig,
}

/// A receiver's `http_config` (or `global.http_config`): how its requests authenticate.
#[derive(Clone, Default, PartialEq)]
pub struct HttpConfig {
    /// The `Authorization` header: `Bearer …` from `authorization` (or the older
    /// `bearer_token`), `Basic …` from `basic_auth`; files are read with the configuration.
    pub authorization: Option<String>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.authorization.as_deref().map(|a| format!("{} ***", a.split(' ').next().unwrap_or("")));
        f.debug_struct("HttpConfig").field("authorization", &shown).finish()
    }
}

/// The secret in the file a `*_file` key names (relative to the configuration's
/// directory), trimmed; only the server's own file may name files.
fn secret_file(c: &mut Checker, value: &Node, key: &str, dir: Option<&Path>) -> Option<String> {
    let text = c.string(value, &format!("`{key}`"))?;
    let Some(dir) = dir else {
        c.error(value.pos, format!("`{key}` is read only from the server's alertmanager.yml"));
        return None;
    };
    let path = dir.join(&text);
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) => {
            c.error(value.pos, format!("`{key}`: cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// Reads an `http_config`; relative `*_file` paths are from the configuration's directory.
fn http_config(c: &mut Checker, node: &Node, dir: Option<&Path>) -> HttpConfig {
    let secret = |c: &mut Checker, map: &Node, key: &str| -> Option<String> {
        let value = map.get(key)?;
        if key.ends_with("_file") {
            secret_file(c, value, key, dir)
        } else {
            c.string(value, &format!("`{key}`"))
        }
    };
    let mut out = HttpConfig::default();
    let entries = c.entries(
        node,
        "an http_config",
        &["authorization", "basic_auth", "bearer_token", "bearer_token_file"],
        &["oauth2", "tls_config", "proxy_url", "follow_redirects", "enable_http2", "proxy_from_environment"],
    );
    for (key, value) in entries {
        let header = match key {
            "authorization" => {
                c.entries(value, "`authorization`", &["type", "credentials", "credentials_file"], &[]);
                let kind = value.get("type").and_then(|t| c.string(t, "`type`")).unwrap_or_else(|| "Bearer".into());
                secret(c, value, "credentials")
                    .or_else(|| secret(c, value, "credentials_file"))
                    .map(|s| format!("{kind} {s}"))
            }
            "basic_auth" => {
                c.entries(value, "`basic_auth`", &["username", "password", "password_file"], &[]);
                let user = value.get("username").and_then(|u| c.string(u, "`username`")).unwrap_or_default();
                let password =
                    secret(c, value, "password").or_else(|| secret(c, value, "password_file")).unwrap_or_default();
                use base64::Engine;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ))
            }
            "bearer_token" => c.string(value, "`bearer_token`").map(|t| format!("Bearer {t}")),
            _ => secret(c, node, "bearer_token_file").map(|t| format!("Bearer {t}")),
        };
        if out.authorization.is_some() && header.is_some() {
            c.error(value.pos, "an http_config takes one of `authorization`, `basic_auth` and `bearer_token`");
        }
        out.authorization = out.authorization.or(header);
    }
    out
}

#[derive(Clone, Debug)]
pub struct SlackConfig {
    pub api_url: String,
    pub http: HttpConfig,
    pub send_resolved: bool,
    /// The message's templated strings (`channel`, `username`, `title`, `text`,
    /// `color`...), each Alertmanager's default unless the configuration sets it.
    pub texts: Vec<(&'static str, String)>,
    /// `fields`: title, value (both templated) and `short`.
    pub fields: Vec<(String, String, bool)>,
    pub link_names: bool,
}

/// A Slack config's templated strings and their defaults, as in Alertmanager.
pub const SLACK_TEXTS: [(&str, &str); 13] = [
    ("channel", ""),
    ("username", r#"{{ template "slack.default.username" . }}"#),
    ("color", r#"{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}"#),
    ("title", r#"{{ template "slack.default.title" . }}"#),
    ("title_link", r#"{{ template "slack.default.titlelink" . }}"#),
    ("pretext", r#"{{ template "slack.default.pretext" . }}"#),
    ("text", r#"{{ template "slack.default.text" . }}"#),
    ("fallback", r#"{{ template "slack.default.fallback" . }}"#),
    ("callback_id", r#"{{ template "slack.default.callbackid" . }}"#),
    ("icon_emoji", r#"{{ template "slack.default.iconemoji" . }}"#),
    ("icon_url", r#"{{ template "slack.default.iconurl" . }}"#),
    ("footer", r#"{{ template "slack.default.footer" . }}"#),
    ("image_url", ""),
];

/// PagerDuty's `details` unless the configuration says otherwise (merged, as in Alertmanager).
pub const PAGERDUTY_DETAILS: [(&str, &str); 4] = [
    ("firing", r#"{{ template "pagerduty.default.instances" .Alerts.Firing }}"#),
    ("resolved", r#"{{ template "pagerduty.default.instances" .Alerts.Resolved }}"#),
    ("num_firing", "{{ .Alerts.Firing | len }}"),
    ("num_resolved", "{{ .Alerts.Resolved | len }}"),
];

#[derive(Clone, Debug)]
pub struct PagerDutyConfig {
    pub routing_key: String,
    pub url: String,
    pub http: HttpConfig,
    pub send_resolved: bool,
    /// `description`, `client`, `client_url`, `severity`, `source`, `class`,
    /// `component`, `group`: templated.
    pub texts: Vec<(&'static str, String)>,
    /// `details`: templated values by name.
    pub details: Vec<(String, String)>,
    /// `links`: href and text, templated.
    pub links: Vec<(String, String)>,
}

/// A PagerDuty config's templated strings and their defaults.
pub const PAGERDUTY_TEXTS: [(&str, &str); 8] = [
    ("description", r#"{{ template "pagerduty.default.description" .}}"#),
    ("client", r#"{{ template "pagerduty.default.client" . }}"#),
    ("client_url", r#"{{ template "pagerduty.default.clientURL" . }}"#),
    ("severity", "error"),
    ("source", r#"{{ template "pagerduty.default.client" . }}"#),
    ("class", ""),
    ("component", ""),
    ("group", ""),
];

#[derive(Clone, Debug)]
pub struct EmailConfig {
    pub to: String,
    pub from: String,
    pub smarthost: String,
    pub hello: String,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    pub require_tls: bool,
    /// Headers, templated; `Subject` defaults to `email.default.subject`.
    pub headers: Vec<(String, String)>,
    /// The HTML body (`email.default.html` unless set; empty for none).
    pub html: String,
    /// The plain-text body, if any; with `html` as well, the message has both parts.
    pub text: Option<String>,
    pub send_resolved: bool,
}

#[derive(Clone, Debug)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

impl Route {
    /// The routes an alert with `labels` goes to: the deepest matching children,
    /// in order, stopping at the first match unless it says `continue`.
    pub fn matching<'a>(&'a self, labels: &Labels) -> Vec<&'a Route> {
        if !matches(&self.matchers, labels) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for child in &self.routes {
            let found = child.matching(labels);
            if !found.is_empty() {
                out.extend(found);
                if !child.continue_matching {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    /// Every route of the tree, depth first.
    pub fn walk(&self) -> Vec<&Route> {
        let mut out = vec![self];
        for child in &self.routes {
            out.extend(child.walk());
        }
        out
    }
}

/// Whether every matcher matches (an absent label has the empty value).
pub fn matches(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

/// Parses Alertmanager's matcher syntax: `name="value"`, `name=~"re"`, `name!=value`,
/// one or several separated by commas, optionally inside `{...}`.
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, String> {
    let mut rest = text.trim();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner.strip_suffix('}').ok_or_else(|| format!("`{text}`: missing closing `}}`"))?.trim();
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let name_len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("`{text}`: expected a label name at `{rest}`"));
        }
        rest = rest[name_len..].trim_start();
        let (op, len) = if rest.starts_with("=~") {
            (MatchOp::Regex, 2)
        } else if rest.starts_with("!~") {
            (MatchOp::NotRegex, 2)
        } else if rest.starts_with("!=") {
            (MatchOp::NotEqual, 2)
        } else if rest.starts_with('=') {
            (MatchOp::Equal, 1)
        } else {
            return Err(format!("`{text}`: expected `=`, `!=`, `=~` or `!~` after `{name}`"));
        };
        rest = rest[len..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => v.push('\n'),
                        Some((_, c)) => v.push(c),
                        None => break,
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("`{text}`: unterminated quoted value"))?;
            value = v;
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        let matcher =
            Matcher::new(op, name, &value).map_err(|e| format!("`{text}`: invalid regular expression: {e}"))?;
        out.push(matcher);
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("`{text}`: expected `,` before `{rest}`"));
        }
    }
    Ok(out)
}

/// Sets a templated string a configuration gives (keeping the default when it does not parse).
fn set_text(texts: &mut [(&'static str, String)], key: &str, text: Option<String>) {
    if let (Some(slot), Some(text)) = (texts.iter_mut().find(|(k, _)| *k == key), text) {
        slot.1 = text;
    }
}

struct Parser<'a> {
    c: Checker,
    defaults: &'a AlertmanagerConfig,
    /// The configuration file's directory, for `*_file` paths (none for a project's).
    dir: Option<&'a Path>,
}

impl Parser<'_> {
    fn matcher_list(&mut self, node: &Node, what: &str) -> Vec<Matcher> {
        let mut out = Vec::new();
        for item in node.as_seq().unwrap_or(&[]) {
            match item.scalar_string().map(|s| parse_matchers(&s)) {
                Some(Ok(m)) => out.extend(m),
                Some(Err(e)) => self.c.error(item.pos, format!("{what}: {e}")),
                None => self.c.error(item.pos, format!("{what} must be strings such as `severity=\"page\"`")),
            }
        }
        if node.as_seq().is_none() {
            self.c.error(node.pos, format!("{what} must be a list"));
        }
        out
    }

    /// The deprecated `match` and `match_re` mappings.
    fn match_map(&mut self, node: &Node, op: MatchOp, what: &str) -> Vec<Matcher> {
        let mut out = Vec::new();
        for (name, value) in self.c.labels(node, what, mobius_series::valid_label_name) {
            match Matcher::new(op, &name, &value) {
                Ok(m) => out.push(m),
                Err(e) => self.c.error(node.pos, format!("{what}: `{name}`: invalid regular expression: {e}")),
            }
        }
        out
    }

    fn route(&mut self, node: &Node, parent: Option<&Route>, id: String) -> Route {
        let mut route = match parent {
            Some(p) => Route {
                id,
                matchers: Vec::new(),
                continue_matching: false,
                routes: Vec::new(),
                mute_time_intervals: Vec::new(),
                active_time_intervals: Vec::new(),
                ..p.clone()
            },
            None => Route {
                id,
                receiver: String::new(),
                group_by: GroupBy::Labels(Vec::new()),
                matchers: Vec::new(),
                continue_matching: false,
                group_wait: Duration::from_secs(30),
                group_interval: Duration::from_secs(300),
                repeat_interval: Duration::from_secs(4 * 3600),
                routes: Vec::new(),
                mute_time_intervals: Vec::new(),
                active_time_intervals: Vec::new(),
            },
        };
        let mut children = None;
        for (key, value) in self.c.entries(
            node,
            "a route",
            &[
                "receiver",
                "group_by",
                "matchers",
                "match",
                "match_re",
                "continue",
                "group_wait",
                "group_interval",
                "repeat_interval",
                "routes",
                "mute_time_intervals",
                "active_time_intervals",
            ],
            &[],
        ) {
            match key {
                "receiver" => route.receiver = self.c.string(value, "`receiver`").unwrap_or_default(),
                "group_by" => {
                    let names = self.c.strings(value, "`group_by`");
                    route.group_by =
                        if names.iter().any(|n| n == "...") { GroupBy::All } else { GroupBy::Labels(names) };
                }
                "matchers" => route.matchers.extend(self.matcher_list(value, "`matchers`")),
                "match" => route.matchers.extend(self.match_map(value, MatchOp::Equal, "`match`")),
                "match_re" => route.matchers.extend(self.match_map(value, MatchOp::Regex, "`match_re`")),
                "continue" => route.continue_matching = self.c.boolean(value, "`continue`").unwrap_or(false),
                "group_wait" => match value.scalar_string().as_deref().and_then(mobius_config::parse_duration) {
                    Some(d) => route.group_wait = d,
                    None => self.c.error(value.pos, "group_wait must be a duration such as `30s` or `0s`"),
                },
                "group_interval" => route.group_interval = self.c.duration(value, key).unwrap_or(route.group_interval),
                "repeat_interval" => {
                    route.repeat_interval = self.c.duration(value, key).unwrap_or(route.repeat_interval)
                }
                "mute_time_intervals" | "active_time_intervals" => {
                    let names = self.c.strings(value, &format!("`{key}`"));
                    for name in &names {
                        if !self.defaults.time_intervals.iter().any(|(n, _)| n == name) {
                            self.c
                                .error(value.pos, format!("time interval `{name}` is not defined in `time_intervals`"));
                        }
                    }
                    if key == "mute_time_intervals" {
                        route.mute_time_intervals = names;
                    } else {
                        route.active_time_intervals = names;
                    }
                }
                _ => children = Some(value),
            }
        }
        if parent.is_none() && (!route.matchers.is_empty() || route.continue_matching) {
            self.c.error(node.pos, "the root route cannot have matchers or `continue`");
        }
        if parent.is_none() && !(route.mute_time_intervals.is_empty() && route.active_time_intervals.is_empty()) {
            self.c.error(node.pos, "the root route cannot have mute or active time intervals");
        }
        if route.receiver.is_empty() {
            self.c.error(node.pos, "the root route needs a `receiver`");
        } else if !self.defaults.receivers.iter().any(|r| r.name == route.receiver) {
            let pos = node.get("receiver").map_or(node.pos, |n| n.pos);
            self.c.error(pos, format!("receiver `{}` is not defined in `receivers`", route.receiver));
        }
        if let Some(children) = children {
            match children.as_seq() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let child = self.route(item, Some(&route), format!("{}.{i}", route.id));
                        route.routes.push(child);
                    }
                }
                None => self.c.error(children.pos, "`routes` must be a list"),
            }
        }
        route
    }

    fn opt_string(&mut self, value: &Node, key: &str) -> Option<String> {
        self.c.string(value, &format!("`{key}`"))
    }

    fn url(&mut self, value: &Node, key: &str) -> Option<String> {
        let url = self.opt_string(value, key)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.c.error(value.pos, format!("`{key}` must be an http:// or https:// URL"));
        }
        Some(url)
    }

    fn configs(&mut self, node: &Node, what: &str) -> Vec<Node> {
        match node.as_seq() {
            Some(items) => items.to_vec(),
            None => {
                self.c.error(node.pos, format!("`{what}` must be a list"));
                Vec::new()
            }
        }
    }

    fn receiver(&mut self, node: &Node) -> Receiver {
        let mut r = Receiver {
            name: String::new(),
            webhooks: Vec::new(),
            slack: Vec::new(),
            pagerduty: Vec::new(),
            email: Vec::new(),
            chat: Vec::new(),
        };
        for (key, value) in self.c.entries(
            node,
            "a receiver",
            &[
                "name",
                "webhook_configs",
                "slack_configs",
                "pagerduty_configs",
                "email_configs",
                "discord_configs",
                "msteams_configs",
                "telegram_configs",
            ],
            &[
                "opsgenie_configs",
                "victorops_configs",
                "pushover_configs",
                "wechat_configs",
                "sns_configs",
                "webex_configs",
            ],
        ) {
            match key {
                "name" => r.name = self.opt_string(value, "name").unwrap_or_default(),
                "webhook_configs" => {
                    for item in self.configs(value, key) {
                        let mut w = WebhookConfig {
                            url: String::new(),
                            send_resolved: true,
                            max_alerts: 0,
                            http: self.defaults.http.clone(),
                        };
                        for (key, value) in self.c.entries(
                            &item,
                            "a webhook config",
                            &["url", "send_resolved", "max_alerts", "http_config"],
                            &["url_file", "timeout"],
                        ) {
                            match key {
                                "url" => w.url = self.url(value, key).unwrap_or_default(),
                                "http_config" => w.http = http_config(&mut self.c, value, self.dir),
                                "send_resolved" => w.send_resolved = self.c.boolean(value, key).unwrap_or(true),
                                _ => match value.scalar_string().and_then(|s| s.parse().ok()) {
                                    Some(n) => w.max_alerts = n,
                                    None => self.c.error(value.pos, "`max_alerts` must be a whole number"),
                                },
                            }
                        }
                        if w.url.is_empty() {
                            self.c.error(item.pos, "a webhook config needs a `url`");
                        }
                        r.webhooks.push(w);
                    }
                }
                "slack_configs" => {
                    for item in self.configs(value, key) {
                        let mut s = SlackConfig {
                            api_url: self.defaults.slack_api_url.clone().unwrap_or_default(),
                            http: self.defaults.http.clone(),
                            send_resolved: false,
                            texts: SLACK_TEXTS.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                            fields: Vec::new(),
                            link_names: false,
                        };
                        let mut known: Vec<&str> =
                            vec!["api_url", "send_resolved", "fields", "link_names", "http_config"];
                        known.extend(SLACK_TEXTS.iter().map(|(k, _)| *k));
                        for (key, value) in self.c.entries(
                            &item,
                            "a slack config",
                            &known,
                            &["api_url_file", "actions", "mrkdwn_in", "short_fields", "thumb_url"],
                        ) {
                            match key {
                                "api_url" => s.api_url = self.url(value, key).unwrap_or_default(),
                                "send_resolved" => s.send_resolved = self.c.boolean(value, key).unwrap_or(false),
                                "link_names" => s.link_names = self.c.boolean(value, key).unwrap_or(false),
                                "http_config" => s.http = http_config(&mut self.c, value, self.dir),
                                "fields" => s.fields = self.slack_fields(value),
                                _ => set_text(&mut s.texts, key, self.template(value, key)),
                            }
                        }
                        if s.api_url.is_empty() {
                            self.c.error(item.pos, "a slack config needs `api_url` (or `global.slack_api_url`)");
                        }
                        r.slack.push(s);
                    }
                }
                "pagerduty_configs" => {
                    for item in self.configs(value, key) {
                        let mut p = PagerDutyConfig {
                            routing_key: String::new(),
                            url: self.defaults.pagerduty_url.clone(),
                            http: self.defaults.http.clone(),
                            send_resolved: true,
                            texts: PAGERDUTY_TEXTS.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                            details: PAGERDUTY_DETAILS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                            links: Vec::new(),
                        };
                        let mut known: Vec<&str> =
                            vec!["routing_key", "url", "send_resolved", "details", "links", "http_config"];
                        known.extend(PAGERDUTY_TEXTS.iter().map(|(k, _)| *k));
                        for (key, value) in self.c.entries(
                            &item,
                            "a pagerduty config",
                            &known,
                            &["service_key", "routing_key_file", "service_key_file", "images"],
                        ) {
                            match key {
                                "routing_key" => p.routing_key = self.opt_string(value, key).unwrap_or_default(),
                                "url" => p.url = self.url(value, key).unwrap_or_default(),
                                "send_resolved" => p.send_resolved = self.c.boolean(value, key).unwrap_or(true),
                                "details" => {
                                    for (name, text) in
                                        self.c.labels(value, "`details`", mobius_series::valid_label_name)
                                    {
                                        self.check_template(value.pos, &format!("details.{name}"), &text);
                                        p.details.retain(|(k, _)| *k != name);
                                        p.details.push((name, text));
                                    }
                                }
                                "links" => p.links = self.pagerduty_links(value),
                                "http_config" => p.http = http_config(&mut self.c, value, self.dir),
                                _ => set_text(&mut p.texts, key, self.template(value, key)),
                            }
                        }
                        if p.routing_key.is_empty() {
                            self.c.error(item.pos, "a pagerduty config needs a `routing_key`");
                        }
                        r.pagerduty.push(p);
                    }
                }
                "discord_configs" => r.chat.extend(self.chat(value, ChatKind::Discord)),
                "msteams_configs" => r.chat.extend(self.chat(value, ChatKind::Teams)),
                "telegram_configs" => r.chat.extend(self.chat(value, ChatKind::Telegram)),
                _ => {
                    for item in self.configs(value, key) {
                        let smtp = &self.defaults.smtp;
                        let mut e = EmailConfig {
                            to: String::new(),
                            from: smtp.from.clone().unwrap_or_default(),
                            smarthost: smtp.smarthost.clone().unwrap_or_default(),
                            hello: smtp.hello.clone().unwrap_or_else(|| "localhost".into()),
                            auth_username: smtp.auth_username.clone(),
                            auth_password: smtp.auth_password.clone(),
                            require_tls: smtp.require_tls.unwrap_or(true),
                            headers: vec![("Subject".into(), r#"{{ template "email.default.subject" . }}"#.into())],
                            html: r#"{{ template "email.default.html" . }}"#.into(),
                            text: None,
                            send_resolved: false,
                        };
                        for (key, value) in self.c.entries(
                            &item,
                            "an email config",
                            &[
                                "to",
                                "from",
                                "smarthost",
                                "hello",
                                "auth_username",
                                "auth_password",
                                "require_tls",
                                "headers",
                                "html",
                                "text",
                                "send_resolved",
                            ],
                            &["tls_config", "auth_secret", "auth_identity", "auth_password_file"],
                        ) {
                            match key {
                                "to" => e.to = self.opt_string(value, key).unwrap_or_default(),
                                "from" => e.from = self.opt_string(value, key).unwrap_or_default(),
                                "smarthost" => e.smarthost = self.opt_string(value, key).unwrap_or_default(),
                                "hello" => e.hello = self.opt_string(value, key).unwrap_or(e.hello),
                                "auth_username" => e.auth_username = self.opt_string(value, key),
                                "auth_password" => e.auth_password = self.opt_string(value, key),
                                "require_tls" => e.require_tls = self.c.boolean(value, key).unwrap_or(true),
                                "text" => e.text = self.template(value, key),
                                "html" => e.html = self.template(value, key).unwrap_or_default(),
                                "headers" => {
                                    for (name, text) in
                                        self.c.labels(value, "`headers`", mobius_series::valid_label_name)
                                    {
                                        self.check_template(value.pos, &format!("headers.{name}"), &text);
                                        e.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
                                        e.headers.push((name, text));
                                    }
                                }
                                _ => e.send_resolved = self.c.boolean(value, key).unwrap_or(false),
                            }
                        }
                        for (what, v) in [("to", &e.to), ("from", &e.from), ("smarthost", &e.smarthost)] {
                            if v.is_empty() {
                                self.c.error(
                                    item.pos,
                                    format!("an email config needs `{what}` (or `global.smtp_{what}`)"),
                                );
                            }
                        }
                        r.email.push(e);
                    }
                }
            }
        }
        if r.name.is_empty() {
            self.c.error(node.pos, "a receiver needs a `name`");
        }
        r
    }

    /// Discord, Teams or Telegram configs.
    fn chat(&mut self, node: &Node, kind: ChatKind) -> Vec<ChatConfig> {
        let (what, url_key, texts) = kind.spec();
        let mut out = Vec::new();
        for item in self.configs(node, what) {
            let mut c = ChatConfig {
                kind,
                url: if kind == ChatKind::Telegram { "https://api.telegram.org".into() } else { String::new() },
                send_resolved: true,
                http: self.defaults.http.clone(),
                texts: texts.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                bot_token: String::new(),
                chat_id: 0,
                disable_notifications: false,
            };
            let mut known = vec![url_key, "send_resolved", "http_config"];
            known.extend(texts.iter().map(|(k, _)| *k));
            if kind == ChatKind::Telegram {
                known.extend(["bot_token", "bot_token_file", "chat_id", "disable_notifications"]);
            }
            let file_key = format!("{url_key}_file");
            let later: Vec<&str> = if kind == ChatKind::Telegram {
                vec!["message_thread_id"]
            } else {
                vec![file_key.as_str(), "content", "username", "avatar_url"]
            };
            for (key, value) in self.c.entries(&item, &format!("a {} config", &what[..what.len() - 8]), &known, &later)
            {
                match key {
                    "send_resolved" => c.send_resolved = self.c.boolean(value, key).unwrap_or(true),
                    "http_config" => c.http = http_config(&mut self.c, value, self.dir),
                    "disable_notifications" => c.disable_notifications = self.c.boolean(value, key).unwrap_or(false),
                    "bot_token" => c.bot_token = self.opt_string(value, key).unwrap_or_default(),
                    "bot_token_file" => {
                        if let Some(token) = secret_file(&mut self.c, value, key, self.dir) {
                            c.bot_token = token;
                        }
                    }
                    "chat_id" => match value.scalar_string().and_then(|s| s.parse().ok()) {
                        Some(id) => c.chat_id = id,
                        None => self.c.error(value.pos, "`chat_id` must be a whole number"),
                    },
                    _ if key == url_key => c.url = self.url(value, key).unwrap_or_default(),
                    _ => set_text(&mut c.texts, key, self.template(value, key)),
                }
            }
            if c.url.is_empty() {
                self.c.error(item.pos, format!("a {} entry needs `{url_key}`", &what[..what.len() - 1]));
            }
            if kind == ChatKind::Telegram && (c.bot_token.is_empty() || c.chat_id == 0) {
                self.c.error(item.pos, "a telegram config needs `bot_token` (or `bot_token_file`) and `chat_id`");
            }
            out.push(c);
        }
        out
    }

    fn template(&mut self, value: &Node, key: &str) -> Option<String> {
        let text = self.opt_string(value, key)?;
        self.check_template(value.pos, key, &text);
        Some(text)
    }

    fn check_template(&mut self, pos: Pos, key: &str, text: &str) {
        if let Err(e) = self.defaults.templates.check(text) {
            self.c.error(pos, format!("the template of `{key}`: {e}"));
        }
    }

    /// A Slack config's `fields`: `title` and `value` (templated), `short`.
    fn slack_fields(&mut self, node: &Node) -> Vec<(String, String, bool)> {
        let mut fields = Vec::new();
        for item in self.configs(node, "fields") {
            let (mut title, mut value, mut short) = (String::new(), String::new(), false);
            for (key, v) in self.c.entries(&item, "a slack field", &["title", "value", "short"], &[]) {
                match key {
                    "title" => title = self.template(v, key).unwrap_or_default(),
                    "value" => value = self.template(v, key).unwrap_or_default(),
                    _ => short = self.c.boolean(v, key).unwrap_or(false),
                }
            }
            if title.is_empty() || value.is_empty() {
                self.c.error(item.pos, "a slack field needs a `title` and a `value`");
            }
            fields.push((title, value, short));
        }
        fields
    }

    /// A PagerDuty config's `links`: `href` and `text`, templated.
    fn pagerduty_links(&mut self, node: &Node) -> Vec<(String, String)> {
        let mut links = Vec::new();
        for item in self.configs(node, "links") {
            let (mut href, mut text) = (String::new(), String::new());
            for (key, v) in self.c.entries(&item, "a pagerduty link", &["href", "text"], &[]) {
                match key {
                    "href" => href = self.template(v, key).unwrap_or_default(),
                    _ => text = self.template(v, key).unwrap_or_default(),
                }
            }
            if href.is_empty() {
                self.c.error(item.pos, "a pagerduty link needs an `href`");
            }
            links.push((href, text));
        }
        links
    }

    fn inhibit_rule(&mut self, node: &Node) -> InhibitRule {
        let mut rule = InhibitRule { source: Vec::new(), target: Vec::new(), equal: Vec::new() };
        for (key, value) in self.c.entries(
            node,
            "an inhibit rule",
            &[
                "source_matchers",
                "target_matchers",
                "source_match",
                "source_match_re",
                "target_match",
                "target_match_re",
                "equal",
            ],
            &[],
        ) {
            match key {
                "source_matchers" => rule.source.extend(self.matcher_list(value, "`source_matchers`")),
                "target_matchers" => rule.target.extend(self.matcher_list(value, "`target_matchers`")),
                "source_match" => rule.source.extend(self.match_map(value, MatchOp::Equal, "`source_match`")),
                "source_match_re" => rule.source.extend(self.match_map(value, MatchOp::Regex, "`source_match_re`")),
                "target_match" => rule.target.extend(self.match_map(value, MatchOp::Equal, "`target_match`")),
                "target_match_re" => rule.target.extend(self.match_map(value, MatchOp::Regex, "`target_match_re`")),
                _ => rule.equal = self.c.strings(value, "`equal`"),
            }
        }
        rule
    }
}

fn global(c: &mut Checker, node: &Node, config: &mut AlertmanagerConfig, dir: Option<&Path>) {
    for (key, value) in c.entries(
        node,
        "`global`",
        &[
            "resolve_timeout",
            "smtp_from",
            "smtp_smarthost",
            "smtp_hello",
            "smtp_auth_username",
            "smtp_auth_password",
            "smtp_require_tls",
            "slack_api_url",
            "pagerduty_url",
            "http_config",
        ],
        &["smtp_auth_secret", "smtp_auth_identity", "opsgenie_api_url", "victorops_api_url", "wechat_api_url"],
    ) {
        let what = format!("`{key}`");
        match key {
            "resolve_timeout" => config.resolve_timeout = c.duration(value, &what).unwrap_or(config.resolve_timeout),
            "smtp_from" => config.smtp.from = c.string(value, &what),
            "smtp_smarthost" => config.smtp.smarthost = c.string(value, &what),
            "smtp_hello" => config.smtp.hello = c.string(value, &what),
            "smtp_auth_username" => config.smtp.auth_username = c.string(value, &what),
            "smtp_auth_password" => config.smtp.auth_password = c.string(value, &what),
            "smtp_require_tls" => config.smtp.require_tls = c.boolean(value, &what),
            "slack_api_url" => config.slack_api_url = c.string(value, &what),
            "http_config" => config.http = http_config(c, value, dir),
            _ => config.pagerduty_url = c.string(value, &what).unwrap_or(config.pagerduty_url.clone()),
        }
    }
}

/// One named time interval: `name` and its `time_intervals` entries.
fn time_interval(c: &mut Checker, node: &Node) -> (String, Vec<TimeInterval>) {
    let mut name = String::new();
    let mut entries = Vec::new();
    for (key, value) in c.entries(node, "a time interval", &["name", "time_intervals"], &[]) {
        if key == "name" {
            name = c.string(value, "`name`").unwrap_or_default();
            continue;
        }
        for item in value.as_seq().unwrap_or(&[]) {
            let mut entry = TimeInterval {
                times: Vec::new(),
                weekdays: Vec::new(),
                days_of_month: Vec::new(),
                months: Vec::new(),
                years: Vec::new(),
                location: ti::Location::Zone(chrono_tz::Tz::UTC),
            };
            let known = ["times", "weekdays", "days_of_month", "months", "years", "location"];
            for (key, value) in c.entries(item, "a time interval entry", &known, &[]) {
                let each = |c: &mut Checker, f: &mut dyn FnMut(&str) -> Result<(), String>| {
                    for text in c.strings(value, &format!("`{key}`")) {
                        if let Err(e) = f(&text) {
                            c.error(value.pos, format!("`{key}`: {e}"));
                        }
                    }
                };
                match key {
                    "times" => {
                        for t in value.as_seq().unwrap_or(&[]) {
                            let mut clock = |k: &str| match t.get(k).and_then(|v| v.scalar_string()) {
                                Some(text) => {
                                    ti::parse_clock(&text).map_err(|e| c.error(t.pos, format!("`{k}`: {e}"))).ok()
                                }
                                None => {
                                    c.error(t.pos, format!("a time range needs `{k}`"));
                                    None
                                }
                            };
                            if let (Some(a), Some(b)) = (clock("start_time"), clock("end_time")) {
                                if a >= b {
                                    c.error(t.pos, "`start_time` must come before `end_time`");
                                }
                                entry.times.push((a, b));
                            }
                        }
                    }
                    "weekdays" => each(c, &mut |s| ti::parse_weekdays(s).map(|r| entry.weekdays.push(r))),
                    "days_of_month" => {
                        each(c, &mut |s| ti::parse_days_of_month(s).map(|r| entry.days_of_month.push(r)))
                    }
                    "months" => each(c, &mut |s| ti::parse_months(s).map(|r| entry.months.push(r))),
                    "years" => each(c, &mut |s| ti::parse_years(s).map(|r| entry.years.push(r))),
                    _ => match c.string(value, "`location`").map(|s| ti::parse_location(&s)) {
                        Some(Ok(l)) => entry.location = l,
                        Some(Err(e)) => c.error(value.pos, format!("`location`: {e}")),
                        None => {}
                    },
                }
            }
            entries.push(entry);
        }
    }
    if name.is_empty() {
        c.error(node.pos, "a time interval needs a `name`");
    }
    (name, entries)
}

/// Reads an `alertmanager.yml`; every problem is reported with its position.
pub fn parse_alertmanager_config(file: SourceFile) -> Result<AlertmanagerConfig, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(FileErrors { file, diagnostics: vec![Diagnostic::new(e.pos, e.message)] }),
    };
    let dir = Path::new(&file.path).parent().unwrap_or(Path::new("."));
    let (c, config) = alertmanager_config(Checker { diagnostics: Vec::new() }, &root, Some(dir));
    c.finish(file, config)
}

/// An `alertmanager.yml`'s content at `root` (the file itself, or a project's
/// `monitoring.alertmanager`). `templates` files are read relative to `dir`; a
/// project's configuration (no `dir`) has the default templates only.
pub fn alertmanager_config(mut c: Checker, root: &Node, dir: Option<&Path>) -> (Checker, AlertmanagerConfig) {
    let templates = match NotificationTemplates::defaults() {
        Ok(t) => t,
        Err(e) => {
            c.error(root.pos, e.to_string());
            NotificationTemplates::empty()
        }
    };
    let mut config = AlertmanagerConfig {
        resolve_timeout: Duration::from_secs(300),
        smtp: SmtpDefaults::default(),
        slack_api_url: None,
        pagerduty_url: "https://events.pagerduty.com/v2/enqueue".into(),
        route: Route {
            id: "0".into(),
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            matchers: Vec::new(),
            continue_matching: false,
            group_wait: Duration::ZERO,
            group_interval: Duration::ZERO,
            repeat_interval: Duration::ZERO,
            routes: Vec::new(),
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        },
        receivers: Vec::new(),
        inhibit_rules: Vec::new(),
        templates: Arc::new(templates),
        time_intervals: Vec::new(),
        http: HttpConfig::default(),
    };
    let known: &[&str] = match dir {
        Some(_) => {
            &["global", "route", "receivers", "inhibit_rules", "templates", "time_intervals", "mute_time_intervals"]
        }
        None => &["global", "route", "receivers", "inhibit_rules"],
    };
    let entries = c.entries(root, "the configuration", known, &["templates", "time_intervals", "mute_time_intervals"]);
    // `global` and `receivers` first: receivers take global defaults, routes name receivers.
    let find = |name: &str| entries.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    if let Some(node) = find("global") {
        global(&mut c, node, &mut config, dir);
    }
    for key in ["time_intervals", "mute_time_intervals"] {
        if let Some(node) = find(key) {
            for item in node.as_seq().unwrap_or(&[]) {
                let (name, entries) = time_interval(&mut c, item);
                if config.time_intervals.iter().any(|(n, _)| *n == name) {
                    c.error(item.pos, format!("time interval `{name}` is defined twice"));
                }
                config.time_intervals.push((name, entries));
            }
            if node.as_seq().is_none() {
                c.error(node.pos, format!("`{key}` must be a list"));
            }
        }
    }
    // Templates before receivers: a receiver's template may call one a file defines.
    if let (Some(node), Some(dir)) = (find("templates"), dir) {
        let patterns = c.strings(node, "`templates`");
        match NotificationTemplates::load(dir, &patterns) {
            Ok(t) => config.templates = Arc::new(t),
            Err(e) => c.error(node.pos, format!("templates: {e}")),
        }
    }
    let mut p = Parser { c, defaults: &config.clone(), dir };
    let mut receivers = Vec::new();
    if let Some(node) = find("receivers") {
        for item in node.as_seq().unwrap_or(&[]) {
            let r = p.receiver(item);
            if receivers.iter().any(|x: &Receiver| x.name == r.name) {
                p.c.error(item.pos, format!("receiver `{}` is defined twice", r.name));
            }
            receivers.push(r);
        }
    }
    let defaults = AlertmanagerConfig { receivers, ..config.clone() };
    p.defaults = &defaults;
    let route = match find("route") {
        Some(node) => Some(p.route(node, None, "0".into())),
        None => {
            p.c.error(Pos { line: 1, col: 1 }, "the configuration needs a `route`");
            None
        }
    };
    let inhibit_rules =
        find("inhibit_rules").map(|node| node.as_seq().unwrap_or(&[]).iter().map(|n| p.inhibit_rule(n)).collect());
    let c = p.c;
    let config = AlertmanagerConfig {
        route: route.unwrap_or(config.route),
        inhibit_rules: inhibit_rules.unwrap_or_default(),
        ..defaults
    };
    (c, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertmanagerConfig, Vec<String>> {
        parse_alertmanager_config(SourceFile::new("alertmanager.yml", text))
            .map_err(|e| e.diagnostics.iter().map(|d| d.short()).collect())
    }

    const CONFIG: &str = "route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  routes:
    - matchers: ['severity=\"page\"', 'team=~\"api|db\"']
      receiver: pager
      continue: true
      routes:
        - match: { env: prod }
          receiver: prod
    - match_re: { severity: 'warn.*' }
      receiver: chat
      group_by: ['...']
receivers:
  - name: default
    webhook_configs: [{ url: 'http://127.0.0.1:9/hook' }]
  - name: pager
  - name: prod
  - name: chat
inhibit_rules:
  - source_matchers: [severity=page]
    target_matchers: [severity=warning]
    equal: [instance]
";

    #[test]
    fn routes_inherit_and_match_as_in_alertmanager() {
        let config = parse(CONFIG).unwrap();
        let route = &config.route;
        assert_eq!(route.routes[0].group_wait, Duration::from_secs(1), "inherited");
        assert_eq!(route.routes[0].routes[0].group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(route.routes[1].group_by, GroupBy::All);
        let names = |pairs: &[(&str, &str)]| {
            route.matching(&Labels::from_pairs(pairs)).iter().map(|r| r.receiver.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&[("severity", "page"), ("team", "api")]), ["pager"]);
        assert_eq!(names(&[("severity", "page"), ("team", "db"), ("env", "prod")]), ["prod"]);
        assert_eq!(names(&[("severity", "warning")]), ["chat"]);
        assert_eq!(names(&[("severity", "page"), ("team", "web")]), ["default"]);
        assert_eq!(config.inhibit_rules[0].equal, ["instance"]);
        assert_eq!(config.receivers[0].webhooks[0].url, "http://127.0.0.1:9/hook");
    }

    #[test]
    fn matchers_parse_in_alertmanager_syntax() {
        let m = parse_matchers(r#"{a="x,y", b!=z, c=~"d.*"}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].value.as_str(), m[1].op, m[2].op), ("x,y", MatchOp::NotEqual, MatchOp::Regex));
        assert!(parse_matchers("a==b").is_ok_and(|m| m[0].value == "=b"));
        assert!(parse_matchers("=b").is_err());
        assert!(parse_matchers("a=~\"(\"").is_err());
    }

    #[test]
    fn problems_have_positions() {
        let errors = parse(
            "route:\n  receiver: nobody\n  matchers: ['x']\n  routes: [{ receiver: a, continue: maybe }]\nreceivers:\n  - name: a\n    webhook_configs: [{ url: ftp://x, bogus: 1 }]\n    opsgenie_configs: []\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "8:5 `opsgenie_configs` in a receiver is not supported by Mobius yet",
                "7:39 unknown key `bogus` in a webhook config (expected one of: url, send_resolved, max_alerts, http_config)",
                "7:30 `url` must be an http:// or https:// URL",
                "3:14 `matchers`: `x`: expected `=`, `!=`, `=~` or `!~` after `x`",
                "2:13 receiver `nobody` is not defined in `receivers`",
                "4:37 `continue` must be true or false",
            ]
        );
    }

    #[test]
    fn template_files_are_read_beside_the_configuration_and_undefined_names_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(
            dir.path().join("templates/team.tmpl"),
            "{{ define \"team.title\" }}{{ .CommonLabels.team | toUpper }}: {{ template \"__subject\" . }}{{ end }}",
        )
        .unwrap();
        let file = |text: &str| {
            let path = dir.path().join("alertmanager.yml");
            parse_alertmanager_config(SourceFile::new(path.display().to_string(), text.to_string()))
                .map_err(|e| e.diagnostics.iter().map(|d| d.short()).collect::<Vec<_>>())
        };
        let receivers = "route: { receiver: chat }\nreceivers:\n  - name: chat\n    slack_configs:\n      - api_url: http://127.0.0.1:9/slack\n        title: '{{ template \"team.title\" . }}'\n";
        let config = file(&format!("templates: ['templates/*.tmpl']\n{receivers}")).unwrap();
        assert_eq!(config.templates.files(), [dir.path().join("templates/team.tmpl")]);
        let title = config.receivers[0].slack[0].texts.iter().find(|(k, _)| *k == "title").unwrap();
        assert_eq!(title.1, "{{ template \"team.title\" . }}");
        // Without the file, the name is unknown: refused where it is used.
        assert_eq!(
            file(receivers).unwrap_err(),
            ["6:16 the template of `title`: template \"team.title\" is not defined"]
        );
        // A secret file is read from beside the configuration too.
        std::fs::write(dir.path().join("bot.token"), "123:abc\n").unwrap();
        let telegram = file("route: { receiver: t }\nreceivers:\n  - name: t\n    telegram_configs: [{ bot_token_file: bot.token, chat_id: 5 }]\n").unwrap();
        assert_eq!(telegram.receivers[0].chat[0].bot_token, "123:abc");
        let missing = file("route: { receiver: t }\nreceivers:\n  - name: t\n    telegram_configs: [{ bot_token_file: nope, chat_id: 5 }]\n").unwrap_err();
        assert!(missing[0].contains("`bot_token_file`: cannot read") && missing[0].contains("nope"), "{missing:?}");
        std::fs::write(dir.path().join("templates/broken.tmpl"), "{{ define \"x\" }}{{ .Status ").unwrap();
        let errors = file(&format!("templates: ['templates/*.tmpl']\n{receivers}")).unwrap_err();
        assert!(errors[0].starts_with("1:12 templates: ") && errors[0].contains("broken.tmpl"), "{errors:?}");
    }

    #[test]
    fn time_intervals_mute_or_activate_routes_and_bad_ones_are_refused_with_positions() {
        let text = "time_intervals:\n  - name: nights\n    time_intervals:\n      - times: [{ start_time: '22:00', end_time: '24:00' }, { start_time: '00:00', end_time: '06:00' }]\n        location: UTC\nmute_time_intervals:\n  - name: weekdays\n    time_intervals: [{ weekdays: ['monday:friday'] }]\nroute:\n  receiver: a\n  routes:\n    - { receiver: a, mute_time_intervals: [nights] }\n    - { receiver: a, active_time_intervals: [weekdays] }\nreceivers: [{ name: a }]\n";
        let config = parse(text).unwrap();
        // Friday 2026-12-04 at 23:20 and at noon, and Sunday 2026-12-06 at noon (UTC).
        let (night, friday_noon, sunday_noon) = (1_796_426_400_000, 1_796_385_600_000, 1_796_558_400_000);
        let mute = &config.route.routes[0];
        assert!(config.muted_by_time(mute, night) && !config.muted_by_time(mute, friday_noon));
        let active = &config.route.routes[1];
        assert!(!config.muted_by_time(active, friday_noon) && config.muted_by_time(active, sunday_noon));
        assert!(!config.muted_by_time(&config.route, night), "the root has none");
        let errors = parse("time_intervals:\n  - name: x\n    time_intervals: [{ weekdays: [friday:monday], location: Mars/Base }]\nroute:\n  receiver: a\n  routes: [{ receiver: a, mute_time_intervals: [y] }]\nreceivers: [{ name: a }]\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "3:34 `weekdays`: `friday:monday`: the range ends before it starts",
                "3:61 `location`: `Mars/Base` is not a time zone of the IANA database",
                "6:48 time interval `y` is not defined in `time_intervals`",
            ]
        );
    }

    #[test]
    fn http_config_authenticates_and_never_shows_its_secret() {
        let config = parse("global:\n  http_config: { bearer_token: t0k }\nroute: { receiver: a }\nreceivers:\n  - name: a\n    webhook_configs: [{ url: 'http://127.0.0.1:9/a' }, { url: 'http://127.0.0.1:9/b', http_config: { authorization: { type: Token, credentials: abc } } }]\n").unwrap();
        let hooks = &config.receivers[0].webhooks;
        assert_eq!(hooks[0].http.authorization.as_deref(), Some("Bearer t0k"), "global.http_config is the default");
        assert_eq!(hooks[1].http.authorization.as_deref(), Some("Token abc"));
        assert!(!format!("{config:?}").contains("t0k") && format!("{:?}", hooks[1].http).contains("Token ***"));
        let errors = parse("route: { receiver: a }\nreceivers:\n  - name: a\n    webhook_configs: [{ url: 'http://127.0.0.1:9/a', http_config: { bearer_token: x, basic_auth: { username: u }, tls_config: {} } }]\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "4:115 `tls_config` in an http_config is not supported by Mobius yet",
                "4:98 an http_config takes one of `authorization`, `basic_auth` and `bearer_token`",
            ]
        );
    }
}
