//! The OpenAPI 3.1 document of `mobius serve`, built with utoipa: every schema is
//! generated from this crate's types ([`ToSchema`]), and each operation names the
//! type it answers or accepts, so the document cannot describe a shape the server
//! does not send. The server routes the same paths; its test
//! `api::tests::every_routed_path_and_method_is_documented` fails when one is missing.

use crate::*;
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ArrayBuilder, ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
    Required, ResponseBuilder, Schema, ServerBuilder, Type,
};
use utoipa::{PartialSchema, ToSchema};

/// What an answer or a request body holds.
#[derive(Clone)]
pub enum Body {
    /// Nothing (204).
    Empty,
    /// JSON of a schema.
    Json(RefOr<Schema>),
    /// Another media type, with its schema.
    Other(&'static str, RefOr<Schema>),
}

/// The method of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// The name in lowercase, as OpenAPI keys operations.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }

    fn http(self) -> HttpMethod {
        match self {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Put => HttpMethod::Put,
            Method::Delete => HttpMethod::Delete,
        }
    }
}

/// One operation of the document.
#[derive(Clone)]
pub struct Op {
    pub method: Method,
    pub path: &'static str,
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
    /// Needs a token (every operation but `/healthz`, `/metrics` and webhooks).
    authenticated: bool,
    /// Answers the API's own errors (400 when a parameter or the body does not
    /// parse); the Prometheus-compatible answers use Prometheus' error shape.
    api_errors: bool,
    parameters: Vec<utoipa::openapi::path::Parameter>,
    body: Option<(Body, bool)>,
    responses: Vec<(u16, &'static str, Body)>,
}

/// The schemas the document refers to, gathered as operations name their types.
#[derive(Default)]
struct Schemas(BTreeMap<String, RefOr<Schema>>);

impl Schemas {
    fn add<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        for (name, schema) in nested {
            self.0.entry(name).or_insert(schema);
        }
        self.0.entry(T::name().into_owned()).or_insert_with(T::schema);
        RefOr::Ref(Ref::from_schema_name(T::name()))
    }
}

thread_local! {
    static SCHEMAS: std::cell::RefCell<Schemas> = std::cell::RefCell::new(Schemas::default());
}

/// JSON of type `T`, its schema generated from the type.
pub fn json<T: ToSchema>() -> Body {
    Body::Json(SCHEMAS.with(|s| s.borrow_mut().add::<T>()))
}

/// A JSON array of `T`.
pub fn list<T: ToSchema>() -> Body {
    let item = SCHEMAS.with(|s| s.borrow_mut().add::<T>());
    Body::Json(ArrayBuilder::new().items(item).into())
}

/// Any JSON object (an answer in another tool's format: Prometheus, Alertmanager, Loki).
pub fn object() -> Body {
    Body::Json(ObjectBuilder::new().schema_type(Type::Object).into())
}

/// A JSON array of objects in another tool's format.
pub fn objects() -> Body {
    Body::Json(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object)).into())
}

/// Plain text.
pub fn text() -> Body {
    Body::Other("text/plain", String::schema())
}

/// A stream of Server-Sent Events.
pub fn event_stream() -> Body {
    Body::Other("text/event-stream", String::schema())
}

/// Bytes of another media type.
pub fn bytes(media: &'static str) -> Body {
    Body::Other(
        media,
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Binary)))
            .into(),
    )
}

/// An HTML form of string fields.
pub fn form(fields: &[&str]) -> Body {
    let mut object = ObjectBuilder::new().schema_type(Type::Object);
    for field in fields {
        object = object.property(*field, String::schema());
    }
    Body::Other("application/x-www-form-urlencoded", object.into())
}

/// A parameter's schema, from a type.
pub fn of<T: PartialSchema>() -> RefOr<Schema> {
    T::schema()
}

/// A string parameter matching `pattern`.
pub fn pattern(pattern: &str) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).into()
}

/// An integer parameter from `min` to `max`.
pub fn range(min: i64, max: i64, default: Option<i64>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .default(default.map(|d| json!(d)))
        .into()
}

/// A string parameter that takes one of `values`.
pub fn one_of(values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).into()
}

impl Op {
    fn new(method: Method, path: &'static str, id: &'static str, summary: &'static str, tag: &'static str) -> Op {
        Op {
            method,
            path,
            id,
            summary,
            tag,
            authenticated: true,
            api_errors: true,
            parameters: Vec::new(),
            body: None,
            responses: Vec::new(),
        }
    }

    /// Open to anyone (its own check, if any, is described by its parameters).
    fn public(mut self) -> Op {
        self.authenticated = false;
        self
    }

    /// Answers errors in another tool's shape, not the API's.
    fn foreign_errors(mut self) -> Op {
        self.api_errors = false;
        self
    }

    fn param(mut self, place: ParameterIn, name: &str, required: bool, schema: RefOr<Schema>, about: &str) -> Op {
        let required = if required || place == ParameterIn::Path { Required::True } else { Required::False };
        let about = (!about.is_empty()).then_some(about);
        self.parameters.push(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(place)
                .required(required)
                .schema(Some(schema))
                .description(about)
                .build(),
        );
        self
    }

    fn path_param(self, name: &str, schema: RefOr<Schema>, about: &str) -> Op {
        self.param(ParameterIn::Path, name, true, schema, about)
    }

    fn query(self, name: &str, required: bool, schema: RefOr<Schema>, about: &str) -> Op {
        self.param(ParameterIn::Query, name, required, schema, about)
    }

    fn header(self, name: &str, required: bool, schema: RefOr<Schema>, about: &str) -> Op {
        self.param(ParameterIn::Header, name, required, schema, about)
    }

    fn body(mut self, body: Body, required: bool) -> Op {
        self.body = Some((body, required));
        self
    }

    fn answer(mut self, status: u16, about: &'static str, body: Body) -> Op {
        self.responses.push((status, about, body));
        self
    }

    /// An error answer in the API's shape ([`Error`]).
    fn error(self, status: u16, about: &'static str) -> Op {
        self.answer(status, about, json::<Error>())
    }

    fn operation(&self) -> Operation {
        let mut op = OperationBuilder::new()
            .summary(Some(self.summary))
            .tag(self.tag)
            .operation_id(Some(self.id))
            .parameters(Some(self.parameters.clone()));
        if !self.authenticated {
            op = op.securities(Some(Vec::<SecurityRequirement>::new()));
        }
        if let Some((body, required)) = &self.body {
            let required = if *required { Required::True } else { Required::False };
            if let Some((media, schema)) = content_of(body) {
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(required))
                        .content(media, ContentBuilder::new().schema(Some(schema)).build())
                        .build(),
                ));
            }
        }
        let mut responses: Vec<(u16, &str, Body)> = self.responses.clone();
        let mut standard = Vec::new();
        if self.authenticated {
            standard.push((401, "Missing, invalid, expired or revoked token"));
            standard.push((403, "The token's role or project does not allow this"));
            if self.api_errors {
                standard.push((400, "A path or query parameter, or the body, does not parse"));
            }
        }
        for (status, about) in standard {
            if responses.iter().all(|(s, _, _)| *s != status) {
                responses.push((status, about, json::<Error>()));
            }
        }
        for (status, about, body) in responses {
            let mut response = ResponseBuilder::new().description(about);
            if let Some((media, schema)) = content_of(&body) {
                response = response.content(media, ContentBuilder::new().schema(Some(schema)).build());
            }
            op = op.response(status.to_string(), response.build());
        }
        op.build()
    }
}

fn content_of(body: &Body) -> Option<(&'static str, RefOr<Schema>)> {
    match body {
        Body::Empty => None,
        Body::Json(schema) => Some(("application/json", schema.clone())),
        Body::Other(media, schema) => Some((media, schema.clone())),
    }
}

/// The document `GET /api/v1/openapi.json` answers.
pub fn document() -> OpenApi {
    SCHEMAS.with(|s| *s.borrow_mut() = Schemas::default());
    let ops = operations();
    let mut paths: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &ops {
        paths.entry(op.path).or_default().push(op);
    }
    let mut builder = utoipa::openapi::path::PathsBuilder::new();
    for (path, ops) in paths {
        let mut item: Option<PathItem> = None;
        for op in ops {
            let one = PathItem::new(op.method.http(), op.operation());
            item = Some(match item {
                None => one,
                Some(mut item) => {
                    item.merge_operations(one);
                    item
                }
            });
        }
        if let Some(item) = item {
            builder = builder.path(path, item);
        }
    }
    let schemas = SCHEMAS.with(|s| std::mem::take(&mut s.borrow_mut().0));
    let mut components = ComponentsBuilder::new().security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("A Mobius token (mbx_...)")).build(),
        ),
    );
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Mobius API")
                .version("1")
                .description(Some(
                    "Projects, runs, jobs, steps, logs, artifacts, test reports, dispatch, cancel, re-run, \
                     tokens, the audit log and the event log, releases, deployments and rollouts, incidents, \
                     and the monitor's Prometheus-, Alertmanager- and Loki-compatible APIs. Every call needs \
                     `Authorization: Bearer TOKEN` except /healthz, /metrics and webhooks (which carry an \
                     X-Hub-Signature-256). Generated from the server's types.",
                ))
                .build(),
        )
        .servers(Some([ServerBuilder::new().url("/").build()]))
        .security(Some([SecurityRequirement::new("bearer", Vec::<String>::new())]))
        .paths(builder.build())
        .components(Some(components.build()))
        .build()
}

/// Every `(method, path)` the document describes.
pub fn documented() -> Vec<(Method, &'static str)> {
    operations().iter().map(|op| (op.method, op.path)).collect()
}

use Method::{Delete, Get, Post, Put};

/// Every operation of the API.
fn operations() -> Vec<Op> {
    let id = || of::<i64>();
    let name = || of::<String>();
    let variable = || pattern("^[A-Za-z_][A-Za-z0-9_]{0,127}$");
    let prom_ok = "Prometheus' answer: status, data.resultType and data.result";
    let prom_bad = "bad_data: the query or a parameter does not parse (Prometheus' error shape)";
    let prom_exec = "execution: the query cannot be evaluated, or the monitor is not enabled";
    let prom = |op: Op| {
        op.foreign_errors().answer(200, prom_ok, object()).answer(400, prom_bad, object()).answer(
            422,
            prom_exec,
            object(),
        )
    };
    vec![
        Op::new(Get, "/healthz", "healthz", "Liveness: 200 once the server is ready", "meta")
            .public()
            .answer(200, "ready", text()),
        Op::new(Get, "/metrics", "metrics", "The server's metrics in Prometheus text format", "meta")
            .public()
            .answer(200, "metrics", text()),
        Op::new(Post, "/-/reload", "reload", "Reload the monitor's files (admin), as Prometheus' /-/reload", "monitor")
            .answer(200, "reloaded: the number of targets", json::<Reloaded>())
            .error(422, "a file does not parse: nothing changed"),
        Op::new(Get, "/api/v1/openapi.json", "openapi", "This document", "meta")
            .answer(200, "the OpenAPI document", object()),
        Op::new(Get, "/api/v1/projects", "listProjects", "List the projects the token sees", "projects")
            .answer(200, "projects", list::<Project>()),
        Op::new(Post, "/api/v1/projects", "createProject", "Add a project (admin); its push workflows run on the branch head", "projects")
            .body(json::<NewProject>(), true)
            .answer(201, "created", json::<ProjectCreated>())
            .error(409, "name taken")
            .error(422, "invalid name, repository or branch"),
        Op::new(Get, "/api/v1/projects/{project}", "getProject", "One project", "projects")
            .path_param("project", name(), "")
            .answer(200, "project", json::<Project>())
            .error(404, "no such project"),
        Op::new(Get, "/api/v1/projects/{project}/secrets", "listSecrets", "Secret names (values are never returned)", "secrets")
            .path_param("project", name(), "")
            .answer(200, "names", list::<SecretEntry>())
            .error(404, "No such resource"),
        Op::new(Put, "/api/v1/projects/{project}/secrets/{name}", "setSecret", "Set a secret (maintainer); stored encrypted", "secrets")
            .path_param("project", name(), "")
            .path_param("name", variable(), "not starting with GITHUB_")
            .body(json::<SetValue>(), true)
            .answer(204, "set", Body::Empty)
            .error(422, "invalid name or empty value")
            .error(404, "No such resource"),
        Op::new(Delete, "/api/v1/projects/{project}/secrets/{name}", "deleteSecret", "Delete a secret (maintainer)", "secrets")
            .path_param("project", name(), "")
            .path_param("name", variable(), "not starting with GITHUB_")
            .answer(204, "deleted", Body::Empty)
            .error(404, "no such secret")
            .error(422, "Invalid name or value"),
        Op::new(Get, "/api/v1/projects/{project}/variables", "listVariables", "Variables (the vars context)", "variables")
            .path_param("project", name(), "")
            .answer(200, "variables", list::<VariableEntry>())
            .error(404, "No such resource"),
        Op::new(Put, "/api/v1/projects/{project}/variables/{name}", "setVariable", "Set a variable (maintainer)", "variables")
            .path_param("project", name(), "")
            .path_param("name", variable(), "not starting with GITHUB_")
            .body(json::<SetValue>(), true)
            .answer(204, "set", Body::Empty)
            .error(422, "invalid name")
            .error(404, "No such resource"),
        Op::new(Post, "/api/v1/projects/{project}/workflows/{workflow}/dispatches", "dispatchWorkflow", "workflow_dispatch a workflow by file name (developer)", "runs")
            .path_param("project", name(), "")
            .path_param("workflow", name(), "file name such as ci.yml")
            .body(json::<Dispatch>(), true)
            .answer(201, "queued runs", json::<RunList>())
            .error(404, "no such workflow file")
            .error(422, "no workflow_dispatch trigger, bad inputs or unknown ref"),
        Op::new(Get, "/api/v1/runs", "listRuns", "Runs, newest first", "runs")
            .query("project", false, name(), "")
            .query("status", false, one_of(&["queued", "in_progress", "completed"]), "")
            .query("limit", false, range(1, 100, Some(30)), "")
            .query("before", false, of::<i64>(), "only runs with a smaller id")
            .answer(200, "runs", list::<Run>())
            .error(404, "No such project"),
        Op::new(Get, "/api/v1/runs/{id}", "getRun", "A run with its jobs, steps and test summary", "runs")
            .path_param("id", id(), "")
            .answer(200, "run", json::<RunDetail>())
            .error(404, "no such run"),
        Op::new(Get, "/api/v1/runs/{id}/jobs", "listJobs", "A run's jobs with their steps", "runs")
            .path_param("id", id(), "")
            .answer(200, "jobs", list::<Job>())
            .error(404, "no such run"),
        Op::new(Get, "/api/v1/runs/{id}/logs", "getLogs", "Step logs as text: job TAB step TAB timestamped line", "logs")
            .path_param("id", id(), "")
            .query("job", false, name(), "job name or id")
            .answer(200, "log text", text())
            .error(404, "no such run or job"),
        Op::new(Get, "/api/v1/runs/{id}/logs/stream", "streamLogs", "Follow logs live (Server-Sent Events: log, step, end)", "logs")
            .path_param("id", id(), "")
            .query("job", false, name(), "")
            .answer(200, "event stream", event_stream())
            .error(404, "no such run"),
        Op::new(Get, "/api/v1/runs/{id}/artifacts", "listArtifacts", "Artifacts of a run", "artifacts")
            .path_param("id", id(), "")
            .answer(200, "artifacts", list::<Artifact>())
            .error(404, "no such run"),
        Op::new(Get, "/api/v1/runs/{id}/artifacts/{name}/{path}", "getArtifactFile", "Download one artifact file", "artifacts")
            .path_param("id", id(), "")
            .path_param("name", name(), "")
            .path_param("path", name(), "")
            .answer(200, "file", bytes("application/octet-stream"))
            .error(404, "no such file")
            .error(410, "expired"),
        Op::new(Get, "/api/v1/runs/{id}/tests", "getTests", "Test reports (JUnit XML) of a run", "tests")
            .path_param("id", id(), "")
            .answer(200, "test summary", json::<TestSummary>())
            .error(404, "no such run"),
        Op::new(Post, "/api/v1/runs/{id}/cancel", "cancelRun", "Cancel a queued or running run (developer)", "runs")
            .path_param("id", id(), "")
            .answer(202, "cancelling", json::<Run>())
            .error(404, "no such run")
            .error(409, "already completed"),
        Op::new(Post, "/api/v1/runs/{id}/rerun", "rerunRun", "Re-run a completed run (developer): same commit, event and inputs, next attempt", "runs")
            .path_param("id", id(), "")
            .body(json::<Rerun>(), true)
            .answer(201, "queued runs", json::<RunList>())
            .error(404, "no such run")
            .error(409, "still running")
            .error(422, "cannot re-run"),
        Op::new(Get, "/api/v1/tokens", "listTokens", "List tokens (admin); never their values", "tokens")
            .answer(200, "tokens", list::<Token>()),
        Op::new(Post, "/api/v1/tokens", "createToken", "Create a token (admin); the value is returned once", "tokens")
            .body(json::<NewToken>(), true)
            .answer(201, "created", json::<TokenCreated>())
            .error(422, "bad role, project or duration"),
        Op::new(Delete, "/api/v1/tokens/{id}", "revokeToken", "Revoke a token (admin)", "tokens")
            .path_param("id", id(), "")
            .answer(204, "revoked", Body::Empty)
            .error(404, "no live token"),
        Op::new(Get, "/api/v1/audit", "getAudit", "The audit log, newest first (admin)", "audit")
            .query("limit", false, range(1, 1000, None), "")
            .query("before", false, of::<i64>(), "")
            .answer(200, "entries", list::<AuditEntry>()),
        Op::new(Post, "/api/v1/hooks/github/{project}", "githubWebhook", "GitHub/Gitea webhook (push, pull_request, ping), verified with X-Hub-Signature-256", "webhooks")
            .public()
            .path_param("project", name(), "")
            .header("X-Hub-Signature-256", true, name(), "")
            .header("X-GitHub-Event", false, name(), "")
            .body(object(), true)
            .error(401, "The signature does not match")
            .error(400, "The payload does not parse")
            .answer(200, "accepted, nothing new to run", json::<RunList>())
            .answer(202, "runs queued", json::<RunList>())
            .error(404, "no such project")
            .error(413, "payload too large")
            .error(422, "commit not in the repository"),
        Op::new(Get, "/api/v1/releases", "listReleases", "Releases, newest first", "deploy")
            .query("project", false, name(), "project name (may be left out when the service name is unique)")
            .query("service", false, name(), "service name")
            .query("limit", false, of::<i64>(), "1 to 1000 (default 30)")
            .answer(200, "releases", list::<Release>())
            .error(404, "No such project or no release of the service")
            .error(422, "The service exists in several projects: name one"),
        Op::new(Get, "/api/v1/releases/{id}", "showRelease", "A release with its manifest and SLSA provenance", "deploy")
            .path_param("id", id(), "")
            .answer(200, "release", json::<ReleaseDetail>())
            .error(404, "No such release"),
        Op::new(Post, "/api/v1/deployments", "createDeployment", "Deploy a release to an environment (developer); the rollout starts at once", "deploy")
            .body(json::<NewDeployment>(), true)
            .answer(201, "the rollout", json::<Rollout>())
            .error(404, "No such project, release or environment")
            .error(409, "A rollout of this service is in progress there, or the promotion order is not met")
            .error(422, "mobius.yaml does not allow this deploy"),
        Op::new(Get, "/api/v1/rollouts", "listRollouts", "Rollouts, newest first", "deploy")
            .query("project", false, name(), "project name (may be left out when the service name is unique)")
            .query("service", false, name(), "service name")
            .query("environment", false, name(), "environment name")
            .query("limit", false, of::<i64>(), "1 to 1000 (default 30)")
            .answer(200, "rollouts", list::<Rollout>())
            .error(404, "No such project"),
        Op::new(Get, "/api/v1/rollouts/{id}", "showRollout", "A rollout with its events", "deploy")
            .path_param("id", id(), "")
            .answer(200, "rollout", json::<RolloutDetail>())
            .error(404, "No such rollout"),
        Op::new(Post, "/api/v1/rollouts/{id}/promote", "promoteRollout", "Go past the current pause (developer)", "deploy")
            .path_param("id", id(), "")
            .answer(200, "the rollout", json::<Rollout>())
            .error(404, "No such rollout")
            .error(409, "The rollout has ended"),
        Op::new(Post, "/api/v1/rollouts/{id}/abort", "abortRollout", "Roll back now, in any phase (developer)", "deploy")
            .path_param("id", id(), "")
            .answer(200, "the rollout", json::<Rollout>())
            .error(404, "No such rollout")
            .error(409, "The rollout has ended"),
        Op::new(Post, "/api/v1/rollouts/{id}/approve", "approveRollout", "Approve a rollout of a protected environment (maintainer; not the release's author or deployer)", "deploy")
            .path_param("id", id(), "")
            .answer(200, "the rollout", json::<Rollout>())
            .error(404, "No such rollout")
            .error(409, "The rollout has ended"),
        Op::new(Post, "/api/v1/rollbacks", "createRollback", "Go back to the previous release, or abort the rollout in progress (developer)", "deploy")
            .body(json::<NewRollback>(), true)
            .answer(201, "the rollout", json::<Rollout>())
            .error(404, "No such project or release")
            .error(409, "Nothing to go back to"),
        Op::new(Get, "/api/v1/environments", "listEnvironments", "What runs where: per environment and service, the version serving and any rollout in progress", "deploy")
            .query("project", false, name(), "project name")
            .answer(200, "places", list::<Place>())
            .error(404, "No such project"),
        Op::new(Get, "/api/v1/targets", "listTargets", "Scrape targets of the monitor and how their last scrape went, in Prometheus' shape (empty without --prometheus-config)", "monitor")
            .answer(200, "targets", object())
            .foreign_errors(),
        prom(Op::new(Get, "/api/v1/query", "query", "A PromQL query at one instant (time: RFC 3339 or Unix seconds, default now)", "monitor")
            .query("query", true, name(), "")
            .query("time", false, name(), "")),
        prom(Op::new(Post, "/api/v1/query", "queryPost", "A PromQL query at one instant, parameters in a form body", "monitor")
            .body(form(&["query", "time"]), false)),
        prom(Op::new(Get, "/api/v1/query_range", "queryRange", "A PromQL query evaluated at every step from start to end", "monitor")
            .query("query", true, name(), "")
            .query("start", true, name(), "")
            .query("end", true, name(), "")
            .query("step", true, name(), "")),
        prom(Op::new(Post, "/api/v1/query_range", "queryRangePost", "A PromQL range query, parameters in a form body", "monitor")
            .body(form(&["query", "start", "end", "step"]), false)),
        prom(Op::new(Get, "/api/v1/series", "listSeries", "Series the store holds that match[] selects (required, repeatable)", "monitor")
            .query("match[]", true, name(), "")),
        prom(Op::new(Post, "/api/v1/series", "listSeriesPost", "Series that match[] selects, parameters in a form body", "monitor")
            .body(form(&["match[]", "start", "end"]), false)),
        prom(Op::new(Get, "/api/v1/labels", "listLabelNames", "Label names, of every series or of those match[] selects", "monitor")
            .query("match[]", false, name(), "")),
        prom(Op::new(Post, "/api/v1/labels", "listLabelNamesPost", "Label names, parameters in a form body", "monitor")
            .body(form(&["match[]", "start", "end"]), false)),
        prom(Op::new(Get, "/api/v1/label/{name}/values", "listLabelValues", "Values of a label, of every series or of those match[] selects", "monitor")
            .path_param("name", name(), "")
            .query("match[]", false, name(), "")),
        Op::new(Get, "/api/v1/rules", "listRules", "Rule groups with their rules' health and alerts, in Prometheus' shape", "monitor")
            .query("type", false, one_of(&["alert", "record"]), "")
            .answer(200, "rule groups", object())
            .error(422, "The server was started without --prometheus-config or --alertmanager-config"),
        Op::new(Get, "/api/v1/alerts", "listRuleAlerts", "Pending and firing alerts of the alerting rules, in Prometheus' shape", "monitor")
            .answer(200, "alerts", object())
            .error(422, "The server was started without --prometheus-config or --alertmanager-config")
            .foreign_errors(),
        Op::new(Get, "/api/v1/status/buildinfo", "buildInfo", "Version of the server, in Prometheus' shape", "monitor")
            .answer(200, "build information", object())
            .foreign_errors(),
        Op::new(Get, "/api/v1/incidents", "listIncidents", "Incidents, newest first", "incidents")
            .query("status", false, one_of(&["open", "acknowledged", "resolved", "unresolved"]), "")
            .query("limit", false, range(1, 1000, None), "")
            .answer(200, "incidents", json::<IncidentList>()),
        Op::new(Get, "/api/v1/incidents/{id}", "showIncident", "An incident with its timeline", "incidents")
            .path_param("id", id(), "")
            .answer(200, "the incident and its events", json::<IncidentDetail>())
            .error(404, "No such incident"),
        Op::new(Post, "/api/v1/incidents/{id}/acknowledge", "acknowledgeIncident", "Acknowledge an open incident: its escalation stops (developer)", "incidents")
            .path_param("id", id(), "")
            .answer(200, "the incident", json::<IncidentAnswer>())
            .error(404, "No such incident")
            .error(409, "The incident is not open"),
        Op::new(Post, "/api/v1/incidents/{id}/resolve", "resolveIncident", "Resolve an incident (developer)", "incidents")
            .path_param("id", id(), "")
            .answer(200, "the incident", json::<IncidentAnswer>())
            .error(404, "No such incident")
            .error(409, "The incident is already resolved"),
        Op::new(Get, "/api/v2/alerts", "getAlerts", "Alerts the alert manager holds, in Alertmanager's v2 shape (`active`, `silenced`, `inhibited`, `filter`)", "alertmanager")
            .query("active", false, of::<bool>(), "")
            .query("silenced", false, of::<bool>(), "")
            .query("inhibited", false, of::<bool>(), "")
            .query("filter", false, name(), "")
            .answer(200, "alerts", objects())
            .error(409, "The server was started without --alertmanager-config"),
        Op::new(Post, "/api/v2/alerts", "postAlerts", "Send alerts from another system (developer)", "alertmanager")
            .body(objects(), true)
            .answer(200, "accepted", Body::Empty)
            .error(409, "The server was started without --alertmanager-config"),
        Op::new(Get, "/api/v2/alerts/groups", "getAlertGroups", "Alert groups by route and group labels", "alertmanager")
            .answer(200, "groups", objects())
            .error(409, "The server was started without --alertmanager-config")
            .foreign_errors(),
        Op::new(Get, "/api/v2/silences", "getSilences", "Silences", "alertmanager")
            .answer(200, "silences", objects())
            .error(409, "The server was started without --alertmanager-config")
            .foreign_errors(),
        Op::new(Post, "/api/v2/silences", "postSilence", "Create a silence, or update the one with `id` (developer)", "alertmanager")
            .body(object(), true)
            .answer(200, "the silence's id", object())
            .error(409, "The server was started without --alertmanager-config"),
        Op::new(Get, "/api/v2/silence/{id}", "getSilence", "One silence", "alertmanager")
            .path_param("id", name(), "")
            .answer(200, "the silence", object())
            .error(404, "No such silence")
            .error(409, "The server was started without --alertmanager-config")
            .foreign_errors(),
        Op::new(Delete, "/api/v2/silence/{id}", "deleteSilence", "Expire a silence now (developer)", "alertmanager")
            .path_param("id", name(), "")
            .answer(200, "expired", Body::Empty)
            .error(404, "No such silence")
            .error(409, "The server was started without --alertmanager-config"),
        Op::new(Get, "/api/v2/receivers", "getReceivers", "Receivers of the Alertmanager configuration", "alertmanager")
            .answer(200, "receivers", objects())
            .error(409, "The server was started without --alertmanager-config")
            .foreign_errors(),
        Op::new(Get, "/api/v2/status", "getStatus", "Status of the alert manager", "alertmanager")
            .answer(200, "status", object())
            .error(409, "The server was started without --alertmanager-config")
            .foreign_errors(),
        Op::new(Post, "/api/v1/write", "remoteWrite", "Prometheus remote write 1.0: a snappy-compressed protobuf WriteRequest (developer)", "monitor")
            .body(bytes("application/x-protobuf"), true)
            .answer(204, "stored", Body::Empty),
        Op::new(Post, "/loki/api/v1/push", "lokiPush", "Push log lines in Loki's JSON format (developer)", "logs")
            .body(object(), true)
            .answer(204, "stored", Body::Empty)
            .error(415, "Only JSON is accepted"),
        Op::new(Get, "/loki/api/v1/query_range", "lokiQueryRange", "LogQL over a time range: a log query's lines (streams), or a metric query's series every step (matrix)", "logs")
            .query("query", true, name(), "")
            .query("start", false, name(), "")
            .query("end", false, name(), "")
            .query("since", false, name(), "")
            .query("limit", false, of::<i64>(), "")
            .query("direction", false, name(), "")
            .query("step", false, name(), "")
            .answer(200, "streams for a log query, matrix for a metric query", object()),
        Op::new(Get, "/loki/api/v1/query", "lokiQuery", "LogQL at one instant: a metric query's vector, or a log query's lines up to that time", "logs")
            .query("query", true, name(), "")
            .query("limit", false, of::<i64>(), "")
            .query("time", false, name(), "")
            .answer(200, "vector (or scalar) for a metric query, streams for a log query", object()),
        Op::new(Get, "/loki/api/v1/labels", "lokiLabels", "Label names of the log streams", "logs")
            .answer(200, "names", object())
            .foreign_errors(),
        Op::new(Get, "/loki/api/v1/label/{name}/values", "lokiLabelValues", "Values of a label of the log streams", "logs")
            .path_param("name", name(), "")
            .answer(200, "values", object())
            .foreign_errors(),
        Op::new(Get, "/api/v1/logs/tail", "tailLogs", "New log lines matching a LogQL query, as Server-Sent Events `line`", "logs")
            .query("query", true, name(), "")
            .answer(200, "an event stream", event_stream()),
        Op::new(Get, "/api/v1/metadata", "metricMetadata", "What targets say about their metrics (# TYPE, # HELP, # UNIT), in Prometheus' shape", "monitor")
            .query("metric", false, name(), "")
            .query("limit", false, of::<i64>(), "")
            .answer(200, "metadata by metric", object())
            .foreign_errors(),
        Op::new(Get, "/api/v1/events", "listEvents", "The event log, oldest first after an id: what happened, in order", "events")
            .query("after", false, range(0, i64::MAX, None), "Only events with a larger id (default 0: from the start)")
            .query("project", false, name(), "Only this project's events")
            .query("kind", false, name(), "Kinds (`run.completed`) or families (`rollout.*`), comma-separated")
            .query("limit", false, range(1, 10000, Some(100)), "")
            .query("newest", false, of::<bool>(), "The newest `limit` events (still oldest first)")
            .answer(200, "a page of events", json::<EventPage>()),
        Op::new(Get, "/api/v1/events/stream", "streamEvents", "The event log, live (Server-Sent Events)", "events")
            .query("after", false, range(0, i64::MAX, None), "Only events with a larger id (default 0: from the start)")
            .query("project", false, name(), "Only this project's events")
            .query("kind", false, name(), "Kinds (`run.completed`) or families (`rollout.*`), comma-separated")
            .header("Last-Event-ID", false, of::<i64>(), "")
            .answer(200, "an event stream", event_stream()),

    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 100, "{}", found.len());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
        }
        // The run's status is the shared enum's schema, not a free string.
        let status = &doc["components"]["schemas"]["Status"];
        assert_eq!(status["enum"], serde_json::json!(["queued", "in_progress", "completed"]), "{status}");
        assert_eq!(
            doc["paths"]["/api/v1/runs/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/RunDetail"
        );
    }

    #[test]
    fn each_method_and_path_is_described_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (method, path) in documented() {
            assert!(seen.insert((method, path)), "{} {path} twice", method.as_str());
        }
    }
}
