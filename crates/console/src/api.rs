//! The JSON API under `/api/`, in the shapes `curfew ... --output json` prints (docs/UI.md).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use curfew_core::decision::Action;
use curfew_core::operation::{Discovery, Operation};
use curfew_core::ports::Override;
use curfew_core::schedule::ScheduleRecord;
use curfew_core::selector::Selector;
use curfew_core::service::invocation::{Invocation, InvocationResponse};
use curfew_core::service::router;
use curfew_core::view::{FireJson, OperationJson, PlannedChangeJson, ScheduleRowJson};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::console::{stop_or_start, Console};
use crate::error::Problem;
use crate::fleet::{fleet, Fleet};

/// Every `/api/` route.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/targets", get(targets))
        .route("/schedules", get(schedules))
        .route("/schedules/{name}", get(schedule))
        .route("/schedules/{name}/trigger", post(trigger))
        .route("/schedules/{name}/enable", post(enable))
        .route("/schedules/{name}/disable", post(disable))
        .route("/overrides", get(overrides).post(add_override))
        .route("/overrides/{id}", delete(remove_override))
        .route("/operations", get(operations))
        .route("/operations/{id}", get(operation))
        .route("/audit", get(audit))
        .route("/audit/verify", get(audit_verify))
        .route("/savings", get(savings))
        .route("/plan", post(plan))
        .route("/stop", post(stop))
        .route("/start", post(start))
}

type ApiResult<T> = Result<Json<T>, Problem>;

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        // serde names the missing or unknown field in its message; point at it when it does.
        let field = if message.contains("`select`") {
            "select"
        } else if message.contains("`action`") || message.contains("unknown variant") {
            "action"
        } else {
            "body"
        };
        Problem::bad_input(field, format!("invalid request body: {message}"))
    })
}

fn selector(text: &str) -> Result<Selector, Problem> {
    Selector::parse(text).map_err(|e| Problem::bad_input("select", e.to_string()))
}

#[derive(Deserialize)]
struct TargetsQuery {
    select: Option<String>,
}

/// `GET /api/targets[?select=SELECTOR]`.
async fn targets(State(c): State<Console>, Query(q): Query<TargetsQuery>) -> ApiResult<Fleet> {
    let text = q.select.filter(|s| !s.trim().is_empty());
    let selector = selector(text.as_deref().unwrap_or(crate::pages::EVERYTHING))?;
    Ok(Json(fleet(&c.hub, &selector).await?))
}

/// `GET /api/schedules`.
async fn schedules(State(c): State<Console>) -> ApiResult<Vec<ScheduleRowJson>> {
    let listed = c.hub.store.list_schedules().await?;
    Ok(Json(ScheduleRowJson::rows(&listed)))
}

/// A schedule with its coming fires, as `curfew schedule show --output json` prints it.
#[derive(Serialize)]
struct ScheduleJson {
    #[serde(flatten)]
    record: ScheduleRecord,
    upcoming: Vec<FireJson>,
}

/// `GET /api/schedules/{name}`.
async fn schedule(State(c): State<Console>, Path(name): Path<String>) -> ApiResult<ScheduleJson> {
    let s = c
        .hub
        .store
        .get_schedule(&name)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no schedule named {name:?}")))?;
    Ok(Json(shown(&c, s).await?))
}

/// A schedule with its next five fires that happen (its calendars read as stored now).
async fn shown(
    c: &Console,
    s: curfew_core::schedule::Schedule,
) -> Result<ScheduleJson, curfew_core::ports::PortError> {
    let calendars = curfew_core::service::poller::schedule_calendars(&c.hub, &s).await?;
    let upcoming = crate::week::upcoming(&s, c.hub.clock.now(), 5, &calendars);
    Ok(ScheduleJson {
        upcoming: upcoming.iter().map(FireJson::from).collect(),
        record: s.into(),
    })
}

/// `POST /api/schedules/{name}/enable`: the schedule as `GET` shows it.
async fn enable(State(c): State<Console>, Path(name): Path<String>) -> ApiResult<ScheduleJson> {
    let s = c.set_schedule_enabled(&name, true).await?;
    Ok(Json(shown(&c, s).await?))
}

/// `POST /api/schedules/{name}/disable`: the schedule as `GET` shows it.
async fn disable(State(c): State<Console>, Path(name): Path<String>) -> ApiResult<ScheduleJson> {
    let s = c.set_schedule_enabled(&name, false).await?;
    Ok(Json(shown(&c, s).await?))
}

/// `GET /api/overrides`: in force, soonest to expire first.
async fn overrides(State(c): State<Console>) -> ApiResult<Vec<Override>> {
    Ok(Json(c.overrides().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    select: String,
    awake_until: String,
}

/// `POST /api/overrides` `{"select": "...", "awake_until": "3h"}`: the override stored.
async fn add_override(State(c): State<Console>, bytes: Bytes) -> ApiResult<Override> {
    let b: OverrideBody = body(&bytes)?;
    Ok(Json(c.add_override(&b.select, &b.awake_until).await?))
}

/// `DELETE /api/overrides/{id}`: `{"removed": ID}`.
async fn remove_override(State(c): State<Console>, Path(id): Path<String>) -> ApiResult<Value> {
    c.remove_override(&id).await?;
    Ok(Json(serde_json::json!({ "removed": id })))
}

/// `POST /api/schedules/{name}/trigger`.
async fn trigger(
    State(c): State<Console>,
    Path(name): Path<String>,
) -> ApiResult<InvocationResponse> {
    curfew_core::schedule::validate_name(&name)
        .map_err(|e| Problem::bad_input("name", e.to_string()))?;
    Ok(Json(c.start(Invocation::Trigger { schedule: name }).await?))
}

#[derive(Deserialize)]
struct OperationsQuery {
    limit: Option<usize>,
}

/// `GET /api/operations[?limit=N]`: newest first (20 unless told).
async fn operations(
    State(c): State<Console>,
    Query(q): Query<OperationsQuery>,
) -> ApiResult<Vec<Operation>> {
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    Ok(Json(c.hub.store.list_operations(limit).await?))
}

/// `GET /api/operations/{id}`: the operation and its tasks.
async fn operation(State(c): State<Console>, Path(id): Path<String>) -> ApiResult<Value> {
    let op = c
        .hub
        .store
        .get_operation(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no operation {id:?}")))?;
    let tasks = c.hub.store.list_tasks(&id).await?;
    let json = serde_json::to_value(OperationJson::new(&op, &tasks))
        .map_err(|e| Problem::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json))
}

/// `GET /api/audit[?since=&until=&target=&operation=&actor=&limit=]`: as `curfew audit list
/// --output json`, newest first.
async fn audit(
    State(c): State<Console>,
    Query(q): Query<crate::audit::AuditQuery>,
) -> ApiResult<Vec<curfew_core::audit_list::ListedRecord>> {
    let filter = q
        .filter()
        .map_err(|(field, message)| Problem::bad_input(field, message))?;
    let records =
        curfew_core::audit_list::list(c.hub.store.as_ref(), &filter, c.hub.clock.now()).await?;
    Ok(Json(records))
}

/// `GET /api/audit/verify`: as `curfew audit verify --output json` (the chains, with their heads'
/// signatures when `CURFEW_AUDIT_KEY` is set, then the operations, tasks and baselines).
async fn audit_verify(
    State(c): State<Console>,
) -> ApiResult<curfew_core::audit_verify::VerifyReport> {
    let key = c.hub.settings.audit.key.as_ref();
    Ok(Json(
        curfew_core::audit_verify::verify_store(c.hub.store.as_ref(), key).await?,
    ))
}

/// `GET /api/savings`: capacity kept asleep over the last 7 days.
async fn savings(State(c): State<Console>) -> ApiResult<crate::savings::Savings> {
    Ok(Json(c.savings().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    action: Action,
    select: String,
}

/// `POST /api/plan` `{"action": "stop", "select": "..."}`: what it would change; writes nothing.
async fn plan(State(c): State<Console>, bytes: Bytes) -> ApiResult<Value> {
    let b: PlanBody = body(&bytes)?;
    let selector = selector(&b.select)?;
    let plan = router::plan(&c.hub, b.action, &selector, Discovery::Cached, None).await?;
    let changes: Vec<PlannedChangeJson> =
        plan.changes.iter().map(PlannedChangeJson::from).collect();
    let json = serde_json::to_value(changes)
        .map_err(|e| Problem::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    select: String,
    #[serde(default)]
    dry_run: bool,
}

async fn run(c: Console, action: Action, bytes: &Bytes) -> ApiResult<InvocationResponse> {
    let b: RunBody = body(bytes)?;
    let selector = selector(&b.select)?;
    let invocation = stop_or_start(action, &selector, b.dry_run)?;
    Ok(Json(c.start(invocation).await?))
}

/// `POST /api/stop` `{"select": "...", "dry_run": false}`.
async fn stop(State(c): State<Console>, bytes: Bytes) -> ApiResult<InvocationResponse> {
    run(c, Action::Stop, &bytes).await
}

/// `POST /api/start` `{"select": "...", "dry_run": false}`.
async fn start(State(c): State<Console>, bytes: Bytes) -> ApiResult<InvocationResponse> {
    run(c, Action::Start, &bytes).await
}
