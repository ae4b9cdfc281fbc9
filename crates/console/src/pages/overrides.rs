//! Keep-awake overrides: the ones in force, adding one for a while, and removing one.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::Form;
use serde::Deserialize;

use super::PageResult;
use crate::config::ConfigError;
use crate::console::Console;
use crate::html::{self, esc};

/// The add form's fields.
#[derive(Default, Deserialize)]
pub struct OverrideForm {
    #[serde(default)]
    select: String,
    #[serde(default)]
    awake_until: String,
}

/// `GET /overrides`.
pub async fn list(State(console): State<Console>) -> PageResult {
    render(&console, &OverrideForm::default(), None, StatusCode::OK).await
}

async fn render(
    console: &Console,
    form: &OverrideForm,
    error: Option<(&'static str, String)>,
    status: StatusCode,
) -> PageResult {
    let overrides = console.overrides().await?;
    let mut out = String::new();
    if overrides.is_empty() {
        out.push_str("<p>No override is in force: every stop acts on its targets.</p>");
    } else {
        out.push_str(r#"<div class="scroll"><table class="sortable" id="overrides">"#);
        out.push_str(&html::header(&[
            "Id",
            "Selector",
            "Awake until",
            "Set at",
            "",
        ]));
        out.push_str("<tbody>");
        for o in &overrides {
            let _ = write!(
                out,
                r#"<tr data-id="{id}"><td>{id}</td><td><code>{select}</code></td><td>{until}</td><td>{set}</td><td><form method="post" action="/overrides/{id_url}/remove"><button type="submit" class="danger">Remove</button></form></td></tr>"#,
                id = esc(&o.id),
                id_url = html::url(&o.id),
                select = esc(o.selector.as_str()),
                until = html::time(o.awake_until),
                set = html::time(o.created_at),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    let field_error = |field: &str| match &error {
        Some((f, message)) if *f == field => Some(message.as_str()),
        _ => None,
    };
    let until_error = field_error("awake_until").map_or_else(String::new, |e| {
        format!(
            r#"<span class="field-error" id="awake_until-error" role="alert">{}</span>"#,
            esc(e)
        )
    });
    let _ = write!(
        out,
        r#"<h2>Keep targets awake</h2>
<form class="run" method="post" action="/overrides">
<div class="field">{select}</div>
<div class="field"><label for="awake_until">Until (a time such as 2027-01-04T22:00:00Z, or a duration such as 3h)</label>
<input id="awake_until" name="awake_until" value="{until}" placeholder="3h" autocomplete="off"{invalid}>
{until_error}</div>
<button type="submit" id="add-override">Keep awake</button>
</form>"#,
        select = html::selector_field(&form.select, field_error("select")),
        until = esc(&form.awake_until),
        invalid = if field_error("awake_until").is_some() {
            r#" aria-invalid="true" aria-describedby="awake_until-error""#
        } else {
            ""
        },
    );
    Ok((status, Html(html::page("Overrides", "Overrides", &out))).into_response())
}

fn back() -> axum::response::Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/overrides")]).into_response()
}

/// `POST /overrides`: adds one, or shows the form again with the error at its field.
pub async fn add(State(console): State<Console>, Form(form): Form<OverrideForm>) -> PageResult {
    match console.add_override(&form.select, &form.awake_until).await {
        Ok(_) => Ok(back()),
        Err(ConfigError::Invalid { field, message }) => {
            render(
                &console,
                &form,
                Some((field, message)),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /overrides/{id}/remove`.
pub async fn remove(State(console): State<Console>, Path(id): Path<String>) -> PageResult {
    console.remove_override(&id).await?;
    Ok(back())
}
