//! Changes to the hub's configuration from the console: enabling and disabling schedules,
//! adding and removing keep-awake overrides. Each is recorded in the audit trail's `config`
//! chain as the command line records it (`curfew_aws::changes`).

use curfew_aws::changes::{json, schedule_json, ChangeError};
use curfew_core::keep_awake::{awake_until, new_override};
use curfew_core::ports::{Override, PortError};
use curfew_core::schedule::Schedule;
use curfew_core::selector::Selector;
use curfew_core::trail::ChangeKind;

use crate::console::Console;

/// Why a configuration change was not made (or not recorded).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad input; `field` names it. Nothing was written.
    #[error("{message}")]
    Invalid {
        /// The request field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No schedule or override by that name or id.
    #[error("{0}")]
    NotFound(String),
    /// The state table failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The change was made but not recorded in the audit trail.
    #[error(transparent)]
    Trail(#[from] ChangeError),
}

impl Console {
    /// Enables or disables the schedule `name` (an enabled one gets its next fire from now).
    pub async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<Schedule, ConfigError> {
        let store = self.hub.store.as_ref();
        let not_found = || ConfigError::NotFound(format!("no schedule named {name:?}"));
        let before = store.get_schedule(name).await?.ok_or_else(not_found)?;
        let now = self.hub.clock.now();
        let next = if enabled {
            let calendars =
                curfew_core::service::poller::schedule_calendars(&self.hub, &before).await?;
            before.next_fire_after(now, &calendars).map(|f| f.time.utc)
        } else {
            None
        };
        if !store.set_schedule_enabled(name, enabled, next).await? {
            return Err(not_found());
        }
        let after = store.get_schedule(name).await?.ok_or_else(not_found)?;
        let kind = if enabled {
            ChangeKind::ScheduleEnabled
        } else {
            ChangeKind::ScheduleDisabled
        };
        self.recorder
            .record(
                store,
                kind,
                name,
                schedule_json(&before),
                schedule_json(&after),
                now,
            )
            .await?;
        Ok(after)
    }

    /// Keeps the targets `select` matches awake until `until` (an RFC 3339 time or a duration
    /// such as `3h`): stops skip them.
    pub async fn add_override(&self, select: &str, until: &str) -> Result<Override, ConfigError> {
        let selector = Selector::parse(select).map_err(|e| ConfigError::Invalid {
            field: "select",
            message: e.to_string(),
        })?;
        let now = self.hub.clock.now();
        let until = awake_until(until, now).map_err(|e| ConfigError::Invalid {
            field: "awake_until",
            message: e.to_string(),
        })?;
        let o = new_override(selector, until, now);
        self.hub.store.put_override(&o).await?;
        self.recorder
            .record(
                self.hub.store.as_ref(),
                ChangeKind::OverrideAdded,
                &o.id,
                None,
                json(&o),
                now,
            )
            .await?;
        Ok(o)
    }

    /// Ends the override `id` before it expires.
    pub async fn remove_override(&self, id: &str) -> Result<(), ConfigError> {
        let now = self.hub.clock.now();
        let before = self
            .hub
            .store
            .active_overrides(now)
            .await?
            .into_iter()
            .find(|o| o.id == id)
            .and_then(|o| json(&o));
        if !self.hub.store.remove_override(id).await? {
            return Err(ConfigError::NotFound(format!("no override with id {id:?}")));
        }
        self.recorder
            .record(
                self.hub.store.as_ref(),
                ChangeKind::OverrideRemoved,
                id,
                before,
                None,
                now,
            )
            .await?;
        Ok(())
    }

    /// The overrides in force, soonest to expire first.
    pub async fn overrides(&self) -> Result<Vec<Override>, PortError> {
        let mut overrides = self
            .hub
            .store
            .active_overrides(self.hub.clock.now())
            .await?;
        overrides.sort_by_key(|o| o.awake_until);
        Ok(overrides)
    }
}
