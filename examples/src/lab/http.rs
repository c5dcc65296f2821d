//! The HTTP target: a workload of GETs of one URL through [`pool_http::Client`], each body
//! read to its end or dropped unread (the field's pitfall).

use std::time::Duration;

use pool_http::{Client, Origin};

use super::sql::error_chain;
use super::{LabError, Run, Setting, Stop, Workload, measure};

/// A URL to GET, and whether calls read the body or drop it unread.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    url: String,
    read_body: bool,
    port: u16,
}

impl HttpTarget {
    /// Checks the URL: `http://` or `https://` (TLS with the client's built-in roots), and
    /// a host.
    ///
    /// # Errors
    /// [`LabError::BadInput`] for another scheme (named, with the two that work) or a URL
    /// the client cannot use.
    pub fn new(url: &str, read_body: bool) -> Result<Self, LabError> {
        if let Some((scheme, _)) = url.split_once("://")
            && !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        {
            return Err(LabError::BadInput(format!(
                "`{scheme}://` is not HTTP: pool-lab http measures http:// and https:// URLs"
            )));
        }
        let origin = Origin::from_url(url).map_err(|e| LabError::BadInput(error_chain(&e)))?;
        Ok(HttpTarget {
            url: url.to_owned(),
            read_body,
            port: origin.port(),
        })
    }

    /// Whether calls read the body to its end.
    pub fn reads_body(&self) -> bool {
        self.read_body
    }

    /// GETs the URL once, so that an unreachable server or an error status is reported
    /// before any measuring.
    ///
    /// # Errors
    /// The [`LabError`] that says which.
    pub async fn probe(&self) -> Result<(), LabError> {
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| LabError::BadInput(error_chain(&e)))?;
        let response = client.get(&self.url).await.map_err(|e| {
            if e.is_invalid_url() || e.is_config() {
                LabError::BadInput(error_chain(&e))
            } else {
                LabError::Unreachable(error_chain(&e))
            }
        })?;
        let status = response.status();
        match status.as_u16() {
            401 | 403 | 407 => Err(LabError::Credentials(format!(
                "{} answered {status}",
                self.url
            ))),
            s if s >= 400 => Err(LabError::Rejected(format!(
                "{} answered {status}",
                self.url
            ))),
            _ => Ok(()),
        }
    }

    /// Runs `workload` with `setting` (`max_open` is `max_conns_per_host`, `max_idle` is
    /// `max_idle_conns_per_host`; `go` turns the drain off) and returns what it cost.
    /// `max_idle` 0 with no grace keeps nothing idle (`disable_keep_alives`); with a grace,
    /// the surplus shrinks to 2 once the grace ends (`max_idle_conns_per_host(0)` is Go's 2).
    ///
    /// # Errors
    /// [`LabError::BadInput`] when the knobs are refused.
    pub async fn run(
        &self,
        workload: Workload,
        setting: &Setting,
        stop: &Stop,
        tick: &(dyn Fn() + Sync),
    ) -> Result<Run, LabError> {
        let mut builder = Client::builder()
            .max_conns_per_host(setting.max_open)
            .max_idle_conns_per_host(setting.max_idle)
            .idle_grace(setting.idle_grace)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if setting.go {
            builder = builder.go_mode();
        }
        if setting.max_idle == 0 && setting.idle_grace.is_zero() {
            // `max_idle_conns_per_host(0)` means Go's default, 2: keeping none idle is
            // `DisableKeepAlives`, in Go as here.
            builder = builder.disable_keep_alives(true);
        }
        let client = builder
            .build()
            .map_err(|e| LabError::BadInput(error_chain(&e)))?;
        let stats = {
            let client = client.clone();
            move || client.stats().pool
        };
        let call = || {
            let (client, url, read) = (client.clone(), self.url.clone(), self.read_body);
            async move {
                let response = client.get(&url).await.map_err(|e| error_chain(&e))?;
                if response.status().as_u16() >= 400 {
                    return Err(format!("HTTP {}", response.status()));
                }
                if read {
                    response
                        .into_body()
                        .bytes()
                        .await
                        .map_err(|e| error_chain(&e))?;
                }
                Ok(())
            }
        };
        let run = measure(workload, setting, call, stats, Some(self.port), stop, tick).await;
        drop(client);
        Ok(run)
    }
}
