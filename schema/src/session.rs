//! How strata's database sessions are set up: one place, used by the API's pool, the test
//! schemas and the bench, so what is tested and measured is what runs.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

/// How a session plans its prepared statements (PostgreSQL's `plan_cache_mode`).
///
/// strata's statements are short parameterised lookups and inserts, prepared once per
/// connection. Under `auto` PostgreSQL plans them again on many executions (a custom plan per
/// call when it guesses the generic one costs more): measured on the command path, planning a
/// projector's batch statement took about as long as running it, and grew with the size of the
/// tables' statistics. A generic plan is made once per connection and reused.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PlanCacheMode {
    /// PostgreSQL chooses per statement and call.
    Auto,
    /// One generic plan per prepared statement and connection (the default).
    #[default]
    ForceGenericPlan,
    /// A new plan on every execution.
    ForceCustomPlan,
}

impl PlanCacheMode {
    /// The value PostgreSQL takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::ForceGenericPlan => "force_generic_plan",
            Self::ForceCustomPlan => "force_custom_plan",
        }
    }
}

impl fmt::Display for PlanCacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlanCacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "force_generic_plan" => Ok(Self::ForceGenericPlan),
            "force_custom_plan" => Ok(Self::ForceCustomPlan),
            other => Err(format!(
                "{other:?} is not one of auto, force_generic_plan, force_custom_plan"
            )),
        }
    }
}

/// `options` with strata's session settings added (kept beside any the URL carries, such as
/// a `search_path`).
pub fn options(options: PgConnectOptions, plan_cache_mode: PlanCacheMode) -> PgConnectOptions {
    options.options([("plan_cache_mode", plan_cache_mode.as_str())])
}
