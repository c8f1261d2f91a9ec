//! The event log over HTTP: `GET /events` pages it after an id, and `GET /events/stream`
//! follows it live as Server-Sent Events, resuming from `Last-Event-ID`.

use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::Stream;
use mobius_core::EventKind;
use mobius_store::{Event, EventFilter, MAX_EVENT_PAGE};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events with a larger id (0: from the start).
    after: Option<i64>,
    project: Option<String>,
    /// A kind (`run.completed`) or a family (`rollout.*`); comma-separated for several.
    kind: Option<String>,
    limit: Option<i64>,
    /// The newest `limit` events (still oldest first) instead of the first after `after`.
    #[serde(default)]
    newest: bool,
}

/// Parses the query into a filter the caller may read: a project token reads its
/// project's events only; `remote` is shown to administrators only.
async fn filter_of(app: &App, caller: &Caller, q: EventQuery) -> ApiResult<EventFilter> {
    let mut kinds = Vec::new();
    for wanted in q.kind.iter().flat_map(|k| k.split(',')).map(str::trim).filter(|k| !k.is_empty()) {
        let matched = EventKind::matching(wanted);
        if matched.is_empty() {
            return Err(ApiError::bad_request(format!(
                "kind: no event kind `{wanted}`; kinds are {} (or a family such as `rollout.*`)",
                EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        kinds.extend(matched);
    }
    // However often a kind is named, it is one condition: at most every kind there is.
    kinds.sort_by_key(|k| k.as_str());
    kinds.dedup();
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_EVENT_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit: must be between 1 and {MAX_EVENT_PAGE}")));
    }
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after: must be an event id (0 or more)"));
    }
    let project = project_of(app, caller, q.project).await?;
    Ok(EventFilter { after, project, kinds, limit, ..Default::default() })
}

/// Whose events the caller reads: the project named (which it must see; a global
/// token may name a removed project, whose events outlive it), else a project token's
/// own project, else every project's (`None`).
pub(crate) async fn project_of(app: &App, caller: &Caller, name: Option<String>) -> ApiResult<Option<String>> {
    match (name, caller.project_id) {
        (Some(name), _) => {
            match app.store.project_by_name(&name).await? {
                Some(p) => caller.require(Role::Viewer, p.id, &p.name)?,
                None if caller.may_globally(Role::Viewer) => {}
                None => return Err(ApiError::not_found(format!("no project '{name}'"))),
            }
            Ok(Some(name))
        }
        (None, Some(id)) => {
            let p = app.store.project_by_id(id).await?.ok_or_else(|| ApiError::not_found("the project was removed"))?;
            Ok(Some(p.name))
        }
        (None, None) => Ok(None),
    }
}

/// An event as the API answers it.
pub fn event_json(caller: &Caller, e: &Event) -> Value {
    let mut value = json!(e);
    value["time"] = json!(super::dto::time(Some(e.at)));
    value["summary"] = json!(e.summary());
    if !caller.may_globally(Role::Admin) {
        if let Some(map) = value.as_object_mut() {
            map.remove("remote");
        }
    }
    value
}

/// `GET /events?after=ID&project=NAME&kind=K&limit=N`: oldest first. A reader that
/// passes the last id it saw as `after` never misses one and never sees one twice.
pub async fn list(State(app): State<Arc<App>>, caller: Caller, Query(q): Query<EventQuery>) -> ApiResult<Json<Value>> {
    let newest = q.newest;
    let filter = filter_of(&app, &caller, q).await?;
    let events = if newest {
        let mut events = app.store.events_newest(&filter, None).await?;
        events.reverse();
        events
    } else {
        app.store.events(&filter).await?
    };
    let last = events.last().map_or(filter.after, |e| e.id);
    Ok(Json(json!({
        "events": events.iter().map(|e| event_json(&caller, e)).collect::<Vec<_>>(),
        "last_id": last,
    })))
}

/// `GET /events/stream`: every event after `after` (or the `Last-Event-ID` header a
/// reconnecting client sends), then each new one as it is appended. Each SSE message
/// is `event: <kind>`, `id: <event id>`, `data: <the event as JSON>`.
pub async fn stream(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<EventQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    let resume =
        match headers.get("last-event-id") {
            Some(value) => {
                Some(value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID: must be the id of an event this stream sent")
                })?)
            }
            None => None,
        };
    let mut filter = filter_of(&app, &caller, q).await?;
    if let Some(id) = resume {
        filter.after = id;
    }
    filter.limit = filter.limit.max(500);
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(256);
    tokio::spawn(follow(app, caller, filter, tx));
    let stream = futures_util::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Sends what is after the filter's position, then sleeps until an append wakes it
/// (or, for appends by another server on the same database, at most a second).
async fn follow(app: Arc<App>, caller: Caller, mut filter: EventFilter, tx: tokio::sync::mpsc::Sender<SseEvent>) {
    let mut appended = app.store.subscribe();
    loop {
        appended.borrow_and_update();
        let events = match app.store.events(&filter).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "the event stream cannot read the log");
                let data = json!({"error": e.to_string()}).to_string();
                let _ = tx.send(SseEvent::default().event("error").data(data)).await;
                return;
            }
        };
        let full = events.len() as i64 >= filter.limit;
        for e in &events {
            let message = SseEvent::default()
                .id(e.id.to_string())
                .event(e.kind.as_str())
                .data(event_json(&caller, e).to_string());
            if tx.send(message).await.is_err() {
                return;
            }
            filter.after = e.id;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tx.closed() => return,
        }
    }
}
