//! The rate limits themselves: the original's table and the `STRATA_RATE_LIMITS` overrides.
//! A leaf: configuration validates with it, and it knows nothing of the server.

use std::collections::BTreeMap;
use std::time::Duration;

/// A limit: `regular` requests per `window`, then `burst` more per `burst_window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Requests per regular window.
    pub regular: u32,
    /// The regular window.
    pub window: Duration,
    /// Extra requests per burst window once the regular window is full.
    pub burst: u32,
    /// The burst window.
    pub burst_window: Duration,
}

/// Every action class and its default, as the original's table.
pub fn defaults() -> BTreeMap<&'static str, Limit> {
    let l = |regular, window: u64, burst, burst_window: u64| Limit {
        regular,
        window: Duration::from_secs(window),
        burst,
        burst_window: Duration::from_secs(burst_window),
    };
    BTreeMap::from([
        ("ALL_REQUESTS", l(500, 1, 2000, 60)),
        ("POST_GRAPHQL", l(50, 1, 200, 60)),
        ("POST_OBJECTS", l(6, 1, 400, 60)),
        ("GET_OBJECTS", l(3, 1, 200, 60)),
        ("POST_GETOBJECTS", l(3, 1, 200, 60)),
        ("POST_DIFF", l(10, 1, 1000, 60)),
        ("STREAM_CREATE", l(1, 1, 100, 60)),
        ("COMMIT_CREATE", l(1, 1, 100, 60)),
        ("USER_CREATE", l(6, 3600, 1000, 7 * 24 * 3600)),
        ("AUTH", l(4, 600, 10, 1800)),
    ])
}

/// Parses `ACTION=regular/seconds,burst/seconds;…` overrides onto the defaults.
pub fn parse(overrides: &str) -> Result<BTreeMap<&'static str, Limit>, String> {
    let mut limits = defaults();
    for entry in overrides
        .split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (action, spec) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?}: expected ACTION=regular/seconds,burst/seconds"))?;
        let key = limits
            .keys()
            .find(|k| k.eq_ignore_ascii_case(action.trim()))
            .copied()
            .ok_or_else(|| format!("unknown action {action:?}"))?;
        let (regular, burst) = spec
            .split_once(',')
            .ok_or_else(|| format!("{entry:?}: expected regular/seconds,burst/seconds"))?;
        let pair = |s: &str| -> Result<(u32, Duration), String> {
            let (n, secs) = s
                .trim()
                .split_once('/')
                .ok_or_else(|| format!("{s:?}: expected count/seconds"))?;
            let n = n
                .trim()
                .parse()
                .map_err(|_| format!("{n:?} is not a count"))?;
            let secs: u64 = secs
                .trim()
                .parse()
                .map_err(|_| format!("{secs:?} is not seconds"))?;
            if secs == 0 {
                return Err(format!("{s:?}: the window must be at least 1 second"));
            }
            Ok((n, Duration::from_secs(secs)))
        };
        let (regular, window) = pair(regular)?;
        let (burst, burst_window) = pair(burst)?;
        limits.insert(
            key,
            Limit {
                regular,
                window,
                burst,
                burst_window,
            },
        );
    }
    Ok(limits)
}
