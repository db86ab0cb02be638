//! Notifications (issue 19): the alerts the server judges from the journey engine, sent to
//! webhook receivers (`[[notify.webhook]]`) grouped, deduplicated, repeated and resolved, with
//! silences. The endpoints that show alerts and manage silences are `api::alerts`.
//!
//! Every `[notify] interval` the notifier judges three rules:
//! - `SLOBurnRate`: an SLO whose burn rates call for a page or a ticket (`causeway_slo`'s
//!   multi-window table, as `/v1/slo` shows it); one alert per SLO, at its most severe level.
//! - `JourneyStallSurge`: at least `stall_surge` instances of a journey stalled *now* (the
//!   engine's count of instances in the `stalled` state, not findings raised over a window: the
//!   alert resolves as soon as the backlog is worked off below the threshold).
//! - `NewFindingKind`: a finding kind appeared that had not been seen since the notifier started
//!   watching. The first round that reads the engine records the kinds present as the baseline
//!   (kept in the notification log, so a restart announces nothing again); an announcement lasts
//!   while findings of its kind are open, and at most `repeat_interval` (ingest findings never
//!   resolve), so it is sent once and resolved, never repeated.
//!
//! Alerts are grouped per receiver by what they are about and their severity: (`slo`, severity),
//! (`journey`, severity), (`kind`, severity).
//!
//! **Invariants:**
//! - Judging never holds ingest up: the engine is read with a `try_lock`
//!   (`JourneyEngine::alert_inputs`), retried briefly; a round in which it stayed busy is skipped
//!   (counted in `skipped`) and nothing is sent for it.
//! - Per receiver and group, a state is sent once: a group is sent when its set of firing,
//!   unsilenced alerts (by fingerprint, the hash of their labels) differs from the last one
//!   delivered to that receiver, again when it is unchanged after `repeat_interval`, and once as
//!   `resolved` when none of its alerts is active any more (a silenced alert is still active). A
//!   failed delivery records nothing, so the next round sends it again.
//! - A silenced alert is never sent; when its silence ends and it still fires, the group differs
//!   from what was delivered and is sent.
//! - Silences (`silences.json`) and the notification log (`notifications.json`) are files of the
//!   data directory, replaced whole (written beside, fsynced, renamed): a crash leaves the old file
//!   or the new one. A silence is answered only once it is on disk; changes are made one at a
//!   time, and a round never waits on one being written.
//! - Label values are the model's names (SLOs, journeys, policies, contexts, event types) and the
//!   fixed finding kinds: bounded by the model, never by clients.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use causeway_envelope::format_time;
use causeway_journey::{FindingKind, Fnv64};
use causeway_model::Sli;
use causeway_store::Store;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::{AlertInputs, JourneyEngine};
use crate::slo::SloView;

/// The rules' alert names.
pub const SLO_BURN_RATE: &str = "SLOBurnRate";
pub const JOURNEY_STALL_SURGE: &str = "JourneyStallSurge";
pub const NEW_FINDING_KIND: &str = "NewFindingKind";
/// Every alert name, for the `causeway_alerts` series.
pub const ALERT_NAMES: [&str; 3] = [SLO_BURN_RATE, JOURNEY_STALL_SURGE, NEW_FINDING_KIND];

/// `[notify]` defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
pub const DEFAULT_STALL_SURGE: u64 = 10;

/// The files of the data directory.
pub const SILENCES_FILE: &str = "silences.json";
pub const LOG_FILE: &str = "notifications.json";

/// How long a receiver may take to answer one notification.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A busy engine is asked again this often, this many times, before the round is skipped.
const ENGINE_RETRY: Duration = Duration::from_millis(50);
const ENGINE_TRIES: u32 = 20;
/// `endsAt` of a firing alert in Alertmanager's payload: Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// What an alert is grouped by besides its name and severity: the first of these it has (an SLO's
/// alert also names its journey, policy, …, but is grouped by the SLO).
const GROUP_BY: [&str; 3] = ["slo", "journey", "kind"];

/// Silences kept (active, and expired within [`EXPIRED_KEPT`]), matchers per silence, and text bounds.
pub const MAX_SILENCES: usize = 1000;
pub const MAX_MATCHERS: usize = 16;
pub const MAX_LABEL_NAME_CHARS: usize = 128;
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
pub const MAX_COMMENT_CHARS: usize = 1024;
pub const MAX_CREATED_BY_CHARS: usize = 256;
/// The longest a silence may last.
pub const MAX_SILENCE: TimeDelta = TimeDelta::days(365);
/// How long an expired silence stays listed.
const EXPIRED_KEPT: TimeDelta = TimeDelta::days(1);

// --- configuration ------------------------------------------------------------------------------

/// A receiver's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Alertmanager's webhook payload (`webhook_config`, version 4).
    Alertmanager,
    /// A smaller JSON with one readable paragraph (`text`), for chat hooks and scripts.
    Plain,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "alertmanager" => Some(Format::Alertmanager),
            "plain" => Some(Format::Plain),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Alertmanager => "alertmanager",
            Format::Plain => "plain",
        }
    }
}

/// `[[notify.webhook]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Unique among the receivers: the `receiver` of payloads and metrics.
    pub name: String,
    pub url: String,
    pub format: Format,
}

/// `[notify]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// How often alerts are judged and receivers notified.
    pub interval: Duration,
    /// An unchanged firing group is sent again after this long.
    pub repeat_interval: Duration,
    /// Prefix of runbook links (the generated runbooks' paths follow it); `None`: the server's own
    /// runbook pages.
    pub runbook_base: Option<String>,
    /// How receivers reach this server (links in payloads); `None`: `http://` and the address it
    /// listens on.
    pub external_url: Option<String>,
    /// Stalled instances of one journey that make a surge.
    pub stall_surge: u64,
    pub webhooks: Vec<Webhook>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            interval: DEFAULT_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            runbook_base: None,
            external_url: None,
            stall_surge: DEFAULT_STALL_SURGE,
            webhooks: Vec::new(),
        }
    }
}

/// Why the notifier could not start or keep its files.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} does not read as causeway's silences ({1}): restore it from a backup, or remove it to start without silences")]
    Corrupt(PathBuf, serde_json::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("cannot create the HTTP client for receivers: {0}")]
    Client(#[from] reqwest::Error),
}

// --- alerts -------------------------------------------------------------------------------------

/// One alert: what it is about (labels), in words (annotations), since when (the wall clock of
/// the round that first judged it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub generator_url: String,
}

impl Alert {
    /// Identifies the alert: a hash of its labels (16 hex digits, as Alertmanager's).
    pub fn fingerprint(&self) -> String {
        let mut h = Fnv64::default();
        for (k, v) in &self.labels {
            h.write(k.as_bytes());
            h.write(&[0xff]);
            h.write(v.as_bytes());
            h.write(&[0xff]);
        }
        format!("{:016x}", h.finish())
    }

    /// The labels it is grouped by: its name, what it is about, its severity.
    pub fn group_labels(&self) -> BTreeMap<String, String> {
        let about = GROUP_BY.iter().find(|k| self.labels.contains_key(**k));
        ["alertname", "severity"].iter().chain(about).filter_map(|k| Some((k.to_string(), self.labels.get(*k)?.clone()))).collect()
    }

    /// Its group's key, as Alertmanager writes one: `{}:{alertname="…", severity="…", slo="…"}`.
    pub fn group_key(&self) -> String {
        group_key(&self.group_labels())
    }
}

fn group_key(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{}}:{{{}}}", inner.join(", "))
}

/// An alert of a round, with the silences that hold it back (none: it fires).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    pub alert: Alert,
    pub fingerprint: String,
    pub silenced_by: Vec<String>,
}

impl ActiveAlert {
    pub fn state(&self) -> &'static str {
        if self.silenced_by.is_empty() { "firing" } else { "silenced" }
    }
}

/// What the rules read in one round.
#[derive(Debug, Default)]
pub struct Observed {
    /// The journey engine's state, when it runs.
    pub engine: Option<AlertInputs>,
    /// Findings raised at ingest, by kind (they never resolve, so all count as open).
    pub ingest_findings: Vec<(String, u64)>,
}

/// The kinds of findings raised at ingest rather than by the engine.
fn ingest_kinds() -> Vec<&'static str> {
    causeway_gen::FINDING_KINDS.iter().map(|(k, _)| *k).filter(|k| !FindingKind::ALL.iter().any(|e| e.as_str() == *k)).collect()
}

/// A burn rate as people say it: `40×`, `6.2×`.
fn times(rate: f64) -> String {
    if rate >= 10.0 { format!("{rate:.0}×") } else { format!("{rate:.1}×") }
}

/// A ratio as a percentage without noise: 0.999 → `99.9%`.
fn percent(ratio: f64) -> String {
    format!("{}%", (ratio * 100.0 * 1e6).round() / 1e6)
}

/// An SLO's subject in words.
fn subject_words(sli: &Sli) -> String {
    match sli {
        Sli::EventSuccess { context } => format!("context {context}"),
        Sli::EventTypeSuccess { event_type } => format!("events of type {event_type}"),
        Sli::ReactionLatency { policy } => format!("policy {policy}"),
        Sli::JourneyCompletion { journey } => format!("journey {journey}"),
    }
}

/// Judges alerts and decides what each receiver is sent; pure but for the clock it is given, so
/// tests drive it with synthetic time.
pub struct Notifier {
    config: NotifyConfig,
    external_url: String,
    log: Log,
    /// The log changed since it was last written.
    dirty: bool,
}

/// What the notifier remembers across rounds and restarts (`notifications.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Log {
    /// Finding kinds seen since the notifier started watching; `None` before the first round
    /// that read them (which records the baseline).
    known_kinds: Option<BTreeSet<String>>,
    /// Kinds announced and not resolved yet, with when they appeared.
    new_kinds: BTreeMap<String, DateTime<Utc>>,
    /// When each active alert (by fingerprint) was first judged.
    started: BTreeMap<String, DateTime<Utc>>,
    /// Per receiver, per group key: the firing alerts last delivered.
    sent: BTreeMap<String, BTreeMap<String, Delivered>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Delivered {
    at: DateTime<Utc>,
    /// By fingerprint.
    alerts: BTreeMap<String, Alert>,
}

/// One notification for one receiver: a group's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub status: GroupStatus,
    /// The firing alerts (`ends_at` none), then those resolved since the last delivery.
    pub alerts: Vec<NotifiedAlert>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStatus {
    Firing,
    Resolved,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Firing => "firing",
            GroupStatus::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifiedAlert {
    pub alert: Alert,
    pub fingerprint: String,
    /// When it was seen resolved; `None` while it fires.
    pub ends_at: Option<DateTime<Utc>>,
}

impl Notifier {
    pub fn new(config: NotifyConfig, external_url: String) -> Notifier {
        Notifier { config, external_url: external_url.trim_end_matches('/').to_string(), log: Log::default(), dirty: false }
    }

    /// Judges the alerts active now from what was observed, each with its first-seen time.
    pub fn judge(&mut self, observed: &Observed, now: DateTime<Utc>) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if let Some(engine) = &observed.engine {
            alerts.extend(engine.slos.iter().filter_map(|v| self.slo_alert(v, now)));
            let threshold = self.config.stall_surge.max(1);
            alerts.extend(engine.stalled.iter().filter(|(_, n)| *n >= threshold).map(|(journey, n)| self.stall_alert(journey, *n, now)));
        }
        let mut open: BTreeMap<String, u64> = BTreeMap::new();
        for (kind, n) in observed.engine.iter().flat_map(|e| e.open_by_kind.iter().map(|(k, n)| (k.to_string(), *n))) {
            *open.entry(kind).or_default() += n;
        }
        for (kind, n) in &observed.ingest_findings {
            *open.entry(kind.clone()).or_default() += n;
        }
        alerts.extend(self.judge_kinds(&open, now));
        // Each alert keeps the time it was first judged while it stays active.
        let mut started = BTreeMap::new();
        for a in &mut alerts {
            let fp = a.fingerprint();
            let since = *self.log.started.get(&fp).unwrap_or(&a.starts_at);
            a.starts_at = since;
            started.insert(fp, since);
        }
        if started != self.log.started {
            self.log.started = started;
            self.dirty = true;
        }
        alerts
    }

    /// `NewFindingKind`: kinds with findings open now that were not seen before.
    fn judge_kinds(&mut self, open: &BTreeMap<String, u64>, now: DateTime<Utc>) -> Vec<Alert> {
        let present: BTreeSet<String> = open.iter().filter(|(_, n)| **n > 0).map(|(k, _)| k.clone()).collect();
        match &mut self.log.known_kinds {
            None => {
                self.log.known_kinds = Some(present);
                self.dirty = true;
                return Vec::new();
            }
            Some(known) => {
                for kind in present {
                    if known.insert(kind.clone()) {
                        self.log.new_kinds.insert(kind, now);
                        self.dirty = true;
                    }
                }
            }
        }
        let repeat = TimeDelta::from_std(self.config.repeat_interval).unwrap_or(TimeDelta::MAX);
        let before = self.log.new_kinds.len();
        self.log.new_kinds.retain(|kind, since| open.get(kind).is_some_and(|n| *n > 0) && now - *since < repeat);
        self.dirty |= self.log.new_kinds.len() != before;
        self.log.new_kinds.iter().map(|(kind, since)| self.kind_alert(kind, open.get(kind).copied().unwrap_or(0), *since)).collect()
    }

    fn runbook_url(&self, path: &str) -> String {
        match &self.config.runbook_base {
            Some(base) if base.ends_with('/') || base.ends_with('#') => format!("{base}{path}"),
            Some(base) => format!("{base}/{path}"),
            // The server serves the same runbooks at /runbooks (pages.rs), with or without `.md`.
            None => match path.strip_prefix("README.md") {
                Some(anchor) => format!("{}/runbooks{anchor}", self.external_url),
                None => format!("{}/runbooks/{}", self.external_url, path.strip_suffix(".md").unwrap_or(path)),
            },
        }
    }

    fn slo_alert(&self, view: &SloView, now: DateTime<Utc>) -> Option<Alert> {
        let e = &view.evaluation;
        let severity = e.alert?;
        let o = &view.objective;
        // The most demanding rule of that severity that fires: the one the summary quotes.
        let rule = e.firing.iter().filter(|r| r.severity == severity).max_by(|a, b| a.factor.total_cmp(&b.factor))?;
        let (subject, name) = o.subject();
        let long = e.burn_rate(rule.long);
        let short = e.burn_rate(rule.short);
        let budget = if e.budget_remaining > 0.0 {
            format!("{} of the error budget left", percent(e.budget_remaining))
        } else {
            format!("the error budget is spent ({} of it used)", percent(1.0 - e.budget_remaining))
        };
        let window = causeway_model::format_duration(o.window_minutes as u64 * 60_000);
        let summary = format!("{}: {} burns its error budget at {} over {}", o.name, subject_words(&o.sli), times(long), rule.long);
        let description = format!(
            "SLO {} ({} of {}, objective {} over {window}) burns its error budget at {} over {} and {} over {}, above the {} that calls for a {}; \
             {} bad of {} over the window, {budget}.",
            o.name,
            o.sli_kind(),
            subject_words(&o.sli),
            percent(o.target),
            times(long),
            rule.long,
            times(short),
            rule.short,
            times(rule.factor),
            severity.as_str(),
            e.window.bad,
            e.window.total(),
        );
        Some(Alert {
            labels: BTreeMap::from([
                ("alertname".to_string(), SLO_BURN_RATE.to_string()),
                ("slo".to_string(), o.name.clone()),
                ("sli".to_string(), o.sli_kind().to_string()),
                (subject.to_string(), name.to_string()),
                ("severity".to_string(), severity.as_str().to_string()),
            ]),
            annotations: BTreeMap::from([
                ("summary".to_string(), summary),
                ("description".to_string(), description),
                ("runbook_url".to_string(), self.runbook_url(&causeway_gen::slo_runbook(&o.sli))),
            ]),
            starts_at: now,
            generator_url: format!("{}/v1/slo", self.external_url),
        })
    }

    fn stall_alert(&self, journey: &str, stalled: u64, now: DateTime<Utc>) -> Alert {
        let threshold = self.config.stall_surge.max(1);
        Alert {
            labels: BTreeMap::from([
                ("alertname".to_string(), JOURNEY_STALL_SURGE.to_string()),
                ("journey".to_string(), journey.to_string()),
                ("severity".to_string(), "ticket".to_string()),
            ]),
            annotations: BTreeMap::from([
                ("summary".to_string(), format!("journey {journey}: {stalled} instances stalled (a surge is {threshold} or more)")),
                (
                    "description".to_string(),
                    format!(
                        "{stalled} instances of journey {journey} reached no new milestone within its stall_after and are stalled now; \
                         the alert resolves when fewer than {threshold} are."
                    ),
                ),
                ("runbook_url".to_string(), self.runbook_url(&causeway_gen::journey_path(journey))),
            ]),
            starts_at: now,
            generator_url: format!("{}/v1/journeys?journey={}&state=stalled", self.external_url, query_value(journey)),
        }
    }

    fn kind_alert(&self, kind: &str, open: u64, since: DateTime<Utc>) -> Alert {
        let meaning = causeway_gen::FINDING_KINDS.iter().find(|(k, _)| *k == kind).map_or("", |(_, m)| *m);
        Alert {
            labels: BTreeMap::from([
                ("alertname".to_string(), NEW_FINDING_KIND.to_string()),
                ("kind".to_string(), kind.to_string()),
                ("severity".to_string(), "ticket".to_string()),
            ]),
            annotations: BTreeMap::from([
                ("summary".to_string(), format!("a kind of finding not seen before: {kind} ({open} open)")),
                ("description".to_string(), format!("{meaning} The first {kind} finding since causeway started watching; {open} open now.")),
                ("runbook_url".to_string(), self.runbook_url(&causeway_gen::finding_path(kind))),
            ]),
            starts_at: since,
            generator_url: format!("{}/v1/findings?kind={kind}", self.external_url),
        }
    }

    /// What `receiver` is to be sent now, group by group.
    pub fn plan(&self, receiver: &str, active: &[ActiveAlert], now: DateTime<Utc>) -> Vec<Notification> {
        let repeat = TimeDelta::from_std(self.config.repeat_interval).unwrap_or(TimeDelta::MAX);
        let mut groups: BTreeMap<String, Vec<&ActiveAlert>> = BTreeMap::new();
        for a in active {
            groups.entry(a.alert.group_key()).or_default().push(a);
        }
        let sent = self.log.sent.get(receiver);
        let keys: BTreeSet<&String> = groups.keys().chain(sent.into_iter().flat_map(|s| s.keys())).collect();
        let mut out = Vec::new();
        for key in keys {
            let members = groups.get(key).map(Vec::as_slice).unwrap_or_default();
            let firing: BTreeMap<&str, &ActiveAlert> =
                members.iter().filter(|a| a.silenced_by.is_empty()).map(|a| (a.fingerprint.as_str(), *a)).collect();
            let last = sent.and_then(|s| s.get(key));
            let resolved = |l: &Delivered| -> Vec<NotifiedAlert> {
                l.alerts
                    .iter()
                    .filter(|(fp, _)| !members.iter().any(|a| a.fingerprint == **fp))
                    .map(|(fp, alert)| NotifiedAlert { alert: alert.clone(), fingerprint: fp.clone(), ends_at: Some(now) })
                    .collect()
            };
            if !firing.is_empty() {
                let changed = last.is_none_or(|l| !l.alerts.keys().map(String::as_str).eq(firing.keys().copied()));
                let due = last.is_some_and(|l| now - l.at >= repeat);
                if !(changed || due) {
                    continue;
                }
                let mut alerts: Vec<NotifiedAlert> =
                    firing.values().map(|a| NotifiedAlert { alert: a.alert.clone(), fingerprint: a.fingerprint.clone(), ends_at: None }).collect();
                alerts.extend(last.map(resolved).unwrap_or_default());
                let group_labels = firing.values().next().map(|a| a.alert.group_labels()).unwrap_or_default();
                out.push(Notification { receiver: receiver.to_string(), group_key: key.clone(), group_labels, status: GroupStatus::Firing, alerts });
            } else if let (true, Some(l)) = (members.is_empty(), last) {
                let alerts = resolved(l);
                let group_labels = l.alerts.values().next().map(Alert::group_labels).unwrap_or_default();
                out.push(Notification {
                    receiver: receiver.to_string(),
                    group_key: key.clone(),
                    group_labels,
                    status: GroupStatus::Resolved,
                    alerts,
                });
            }
        }
        out
    }

    /// Records a notification its receiver took.
    pub fn delivered(&mut self, n: &Notification, now: DateTime<Utc>) {
        let groups = self.log.sent.entry(n.receiver.clone()).or_default();
        match n.status {
            GroupStatus::Firing => {
                let alerts = n.alerts.iter().filter(|a| a.ends_at.is_none()).map(|a| (a.fingerprint.clone(), a.alert.clone())).collect();
                groups.insert(n.group_key.clone(), Delivered { at: now, alerts });
            }
            GroupStatus::Resolved => {
                groups.remove(&n.group_key);
            }
        }
        if groups.is_empty() {
            self.log.sent.remove(&n.receiver);
        }
        self.dirty = true;
    }

    /// Forgets what was delivered to receivers no longer configured.
    fn keep_receivers(&mut self, names: &[String]) {
        let before = self.log.sent.len();
        self.log.sent.retain(|r, _| names.contains(r));
        self.dirty |= self.log.sent.len() != before;
    }

    pub fn external_url(&self) -> &str {
        &self.external_url
    }
}

/// A value in a query string: what is not unreserved is percent-encoded.
fn query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

// --- payloads -----------------------------------------------------------------------------------

/// Labels (or annotations) every alert of the notification shares.
fn common(alerts: &[NotifiedAlert], of: impl Fn(&Alert) -> &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let Some(first) = alerts.first() else { return BTreeMap::new() };
    of(&first.alert).iter().filter(|(k, v)| alerts.iter().all(|a| of(&a.alert).get(*k) == Some(*v))).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Alertmanager's webhook payload (`webhook_config`, version 4).
pub fn alertmanager_payload(n: &Notification, external_url: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status.as_str(),
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common(&n.alerts, |a| &a.labels),
        "commonAnnotations": common(&n.alerts, |a| &a.annotations),
        "externalURL": external_url,
        "alerts": n.alerts.iter().map(|a| json!({
            "status": if a.ends_at.is_some() { "resolved" } else { "firing" },
            "labels": a.alert.labels,
            "annotations": a.alert.annotations,
            "startsAt": format_time(&a.alert.starts_at),
            "endsAt": a.ends_at.as_ref().map_or_else(|| ZERO_TIME.to_string(), format_time),
            "generatorURL": a.alert.generator_url,
            "fingerprint": a.fingerprint,
        })).collect::<Vec<_>>(),
    })
}

/// The plain payload: the group, its severity, one paragraph to read, and the alerts.
pub fn plain_payload(n: &Notification) -> Value {
    let severity = n.group_labels.get("severity").cloned().unwrap_or_default();
    let group: Vec<String> = n.group_labels.iter().filter(|(k, _)| *k != "alertname" && *k != "severity").map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "status": n.status.as_str(),
        "receiver": n.receiver,
        "group": group.join(","),
        "severity": severity,
        "text": plain_text(n, &severity),
        "alerts": n.alerts.iter().map(|a| json!({
            "status": if a.ends_at.is_some() { "resolved" } else { "firing" },
            "labels": a.alert.labels,
            "annotations": a.alert.annotations,
            "starts_at": format_time(&a.alert.starts_at),
            "ends_at": a.ends_at.as_ref().map(format_time),
            "fingerprint": a.fingerprint,
        })).collect::<Vec<_>>(),
    })
}

/// One paragraph: `[PAGE] FIRING: summary. Description Runbook: URL`, alert after alert.
fn plain_text(n: &Notification, severity: &str) -> String {
    let mut parts = Vec::new();
    for a in &n.alerts {
        let get = |k: &str| a.alert.annotations.get(k).map(String::as_str).unwrap_or_default();
        let mut text = if let Some(end) = &a.ends_at {
            let (from, to) = (a.alert.starts_at.format("%Y-%m-%dT%H:%M:%SZ"), end.format("%Y-%m-%dT%H:%M:%SZ"));
            format!("RESOLVED: {} (from {from} to {to}).", get("summary"))
        } else {
            format!("FIRING: {}. {}", get("summary"), get("description"))
        };
        if !get("runbook_url").is_empty() {
            text.push_str(&format!(" Runbook: {}", get("runbook_url")));
        }
        parts.push(text);
    }
    format!("[{}] {}", severity.to_uppercase(), parts.join(" "))
}

// --- silences -----------------------------------------------------------------------------------

/// A silence: alerts whose labels equal every matcher are not sent until `ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub comment: String,
    pub created_by: String,
}

impl Silence {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.is_active(now) { "active" } else { "expired" }
    }

    pub fn json(&self, now: DateTime<Utc>) -> Value {
        json!({
            "id": self.id,
            "state": self.state(now),
            "matchers": self.matchers,
            "starts_at": format_time(&self.starts_at),
            "ends_at": format_time(&self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
        })
    }
}

/// When a new silence ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Ends {
    /// This long from now (`"2h"`, the model's duration syntax).
    After(String),
    /// At this time (RFC 3339).
    At(String),
}

/// A silence asked for (`POST /v1/silences`), not checked yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSilence {
    pub matchers: BTreeMap<String, String>,
    pub ends: Ends,
    pub comment: String,
    pub created_by: String,
}

/// Why a silence was refused, or not found.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// A client mistake, in a sentence.
    #[error("{0}")]
    Invalid(String),
    #[error("no silence has id '{0}'")]
    NotFound(String),
    #[error("silence {0} has already expired")]
    AlreadyExpired(String),
    #[error("{MAX_SILENCES} silences are kept already: expire some (DELETE /v1/silences/ID) before adding more")]
    TooMany,
    #[error(transparent)]
    Io(#[from] NotifyError),
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl NewSilence {
    /// Checks it and makes it a silence from `now`, with a new id.
    pub fn check(self, now: DateTime<Utc>) -> Result<Silence, SilenceError> {
        let invalid = |m: String| Err(SilenceError::Invalid(m));
        if self.matchers.is_empty() {
            return invalid(
                "a silence needs at least one matcher, e.g. {\"matchers\": {\"slo\": \"checkout-latency\"}}: one without would silence every alert"
                    .into(),
            );
        }
        if self.matchers.len() > MAX_MATCHERS {
            return invalid(format!("a silence takes at most {MAX_MATCHERS} matchers, not {}", self.matchers.len()));
        }
        for (name, value) in &self.matchers {
            if !is_label_name(name) || name.chars().count() > MAX_LABEL_NAME_CHARS {
                let shown: String = name.chars().take(80).collect();
                return invalid(format!(
                    "matcher {shown:?} is not a label name: use letters, digits and '_', not starting with a digit, at most {MAX_LABEL_NAME_CHARS} \
                     (alerts carry alertname, slo, sli, context, event_type, policy, journey, kind and severity)"
                ));
            }
            if value.is_empty() || value.chars().count() > MAX_LABEL_VALUE_CHARS {
                return invalid(format!("matcher {name}: give the label's exact value, 1 to {MAX_LABEL_VALUE_CHARS} characters"));
            }
        }
        let ends_at = match &self.ends {
            Ends::After(text) => {
                // As the document's pattern says: digits and a unit, nothing around them.
                let parsed = if text.trim() == text { causeway_model::parse_duration(text) } else { Err(format!("'{text}' has spaces around it")) };
                let ms = parsed.map_err(|e| SilenceError::Invalid(format!("duration: {e}; write e.g. \"2h\"")))?;
                let d = TimeDelta::try_milliseconds(i64::try_from(ms).unwrap_or(i64::MAX)).filter(|d| *d <= MAX_SILENCE);
                let Some(d) = d else {
                    return invalid(format!("duration '{text}' is longer than a silence may last ({}d)", MAX_SILENCE.num_days()));
                };
                now + d
            }
            Ends::At(text) => {
                let at = causeway_envelope::parse_time(text).map_err(|e| SilenceError::Invalid(format!("ends_at: {e}")))?;
                if at <= now {
                    return invalid(format!("ends_at {text} has passed: a silence ends in the future (or give a duration, e.g. \"2h\")"));
                }
                if at - now > MAX_SILENCE {
                    return invalid(format!("ends_at {text} is further than a silence may last ({} days from now)", MAX_SILENCE.num_days()));
                }
                at
            }
        };
        // Blank as the document's pattern says it (`[^\t\n\r ]`), the same in every regex dialect.
        if self.comment.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) || self.comment.chars().count() > MAX_COMMENT_CHARS {
            return invalid(format!("say why in comment (1 to {MAX_COMMENT_CHARS} characters), e.g. \"deploying the fix for INC-42\""));
        }
        if self.created_by.chars().count() > MAX_CREATED_BY_CHARS {
            return invalid(format!("created_by takes at most {MAX_CREATED_BY_CHARS} characters"));
        }
        Ok(Silence { id: new_id(), matchers: self.matchers, starts_at: now, ends_at, comment: self.comment, created_by: self.created_by })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SilenceFile {
    silences: Vec<Silence>,
}

/// The silences of the file at `path`; none when it does not exist yet.
fn load_silences(path: &Path) -> Result<Vec<Silence>, NotifyError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice::<SilenceFile>(&bytes).map_err(|e| NotifyError::Corrupt(path.to_path_buf(), e))?.silences),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(NotifyError::Read(path.to_path_buf(), e)),
    }
}

/// The silences still listed: active, or expired within [`EXPIRED_KEPT`].
fn kept(silences: &[Silence], now: DateTime<Utc>) -> Vec<Silence> {
    silences.iter().filter(|s| now - s.ends_at < EXPIRED_KEPT).cloned().collect()
}

/// Writes `path` whole: a file beside it, fsynced, renamed over it, and the directory fsynced.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), NotifyError> {
    let tmp = path.with_extension("json.tmp");
    let fail = |e| NotifyError::Write(path.to_path_buf(), e);
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is.
        #[cfg(unix)]
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
        #[cfg(not(unix))]
        let _ = dir;
    }
    Ok(())
}

/// A new silence's id: 128 random bits as a UUID (version 4).
fn new_id() -> String {
    let mut b = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if random.is_err() {
        // No random source: the time and a counter still make it unique in this process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b[..8].copy_from_slice(&Utc::now().timestamp_nanos_opt().unwrap_or_default().to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

// --- the shared state ---------------------------------------------------------------------------

/// A receiver's deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverStatus {
    pub name: String,
    pub format: Format,
    pub sent: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

/// What the notifier last did, for `GET /v1/alerts` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Whether the notifier runs (receivers are configured).
    pub running: bool,
    pub interval: Duration,
    /// Rounds completed, deliveries included.
    pub evaluations: u64,
    /// Rounds skipped because the journey engine stayed busy or the store failed.
    pub skipped: u64,
    pub evaluated_at: Option<DateTime<Utc>>,
    /// The journey engine's clock at the last round.
    pub clock: Option<DateTime<Utc>>,
    pub alerts: Vec<ActiveAlert>,
    pub receivers: Vec<ReceiverStatus>,
    pub last_error: Option<String>,
}

/// What the notifier and the endpoints share: the silences and the notifier's status.
pub struct Notifications {
    /// Where the silences are kept (`None`: in memory only, for tests).
    path: Option<PathBuf>,
    silences: RwLock<Vec<Silence>>,
    /// Held by a change from its read to its swap, the file written in between: changes one at a
    /// time, while readers (the notifier's rounds) never wait on a write to disk.
    writer: Mutex<()>,
    status: RwLock<Status>,
    /// Wakes the notifier when a silence changes, so that it need not wait a whole interval.
    wake: tokio::sync::Notify,
}

impl Notifications {
    /// The silences of the data directory `data` (none when the file does not exist yet).
    pub fn open(data: &Path) -> Result<Notifications, NotifyError> {
        let path = data.join(SILENCES_FILE);
        let silences = load_silences(&path)?;
        Ok(Notifications::with(Some(path), silences))
    }

    /// Silences kept in memory only.
    pub fn in_memory() -> Notifications {
        Notifications::with(None, Vec::new())
    }

    fn with(path: Option<PathBuf>, silences: Vec<Silence>) -> Notifications {
        Notifications { path, silences: RwLock::new(silences), writer: Mutex::new(()), status: RwLock::default(), wake: tokio::sync::Notify::new() }
    }

    pub fn status(&self) -> Status {
        self.status.read().expect("notifier status").clone()
    }

    /// The silences listed: active first, the newest first.
    pub fn silences(&self, now: DateTime<Utc>) -> Vec<Silence> {
        let mut all = kept(&self.silences.read().expect("silences"), now);
        all.sort_by(|a, b| b.is_active(now).cmp(&a.is_active(now)).then(b.starts_at.cmp(&a.starts_at)).then(a.id.cmp(&b.id)));
        all
    }

    /// Replaces the silences by `next` once they are on disk; the caller holds `writer`.
    fn commit(&self, next: Vec<Silence>) -> Result<(), NotifyError> {
        if let Some(path) = &self.path {
            let file = SilenceFile { silences: next };
            write_atomically(path, &serde_json::to_vec_pretty(&file).expect("silences serialize"))?;
            *self.silences.write().expect("silences") = file.silences;
        } else {
            *self.silences.write().expect("silences") = next;
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Adds a silence once it is on disk. Blocking (a file write).
    pub fn add_silence(&self, new: NewSilence, now: DateTime<Utc>) -> Result<Silence, SilenceError> {
        let silence = new.check(now)?;
        let _writer = self.writer.lock().expect("silences writer");
        let mut next = kept(&self.silences.read().expect("silences"), now);
        if next.len() >= MAX_SILENCES {
            return Err(SilenceError::TooMany);
        }
        next.push(silence.clone());
        self.commit(next)?;
        Ok(silence)
    }

    /// Expires a silence now. Blocking (a file write).
    pub fn expire_silence(&self, id: &str, now: DateTime<Utc>) -> Result<Silence, SilenceError> {
        let _writer = self.writer.lock().expect("silences writer");
        let mut next = kept(&self.silences.read().expect("silences"), now);
        let Some(s) = next.iter_mut().find(|s| s.id == id) else { return Err(SilenceError::NotFound(id.to_string())) };
        if !s.is_active(now) {
            return Err(SilenceError::AlreadyExpired(id.to_string()));
        }
        s.ends_at = now;
        let expired = s.clone();
        self.commit(next)?;
        Ok(expired)
    }

    /// Each alert with the active silences that match it.
    pub fn silence(&self, alerts: Vec<Alert>, now: DateTime<Utc>) -> Vec<ActiveAlert> {
        let silences = self.silences.read().expect("silences");
        alerts
            .into_iter()
            .map(|alert| {
                let silenced_by = silences.iter().filter(|s| s.is_active(now) && s.matches(&alert.labels)).map(|s| s.id.clone()).collect();
                ActiveAlert { fingerprint: alert.fingerprint(), alert, silenced_by }
            })
            .collect()
    }
}

// --- the task -----------------------------------------------------------------------------------

/// Starts the notifier: every `interval` it judges the alerts and notifies the receivers. The log
/// of what was delivered is read from (and kept in) the data directory `data`.
pub fn spawn(
    config: NotifyConfig,
    external_url: String,
    hub: Arc<Notifications>,
    data: &Path,
    engine: Option<JourneyEngine>,
    store: Store,
) -> Result<(), NotifyError> {
    let log_path = data.join(LOG_FILE);
    let log = match std::fs::read(&log_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            // The log only spares receivers repeats: a fresh one re-sends what fires.
            tracing::warn!(message = "the notification log does not read; starting afresh", path = %log_path.display(), error = %e);
            Log::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Log::default(),
        Err(e) => return Err(NotifyError::Read(log_path, e)),
    };
    let client = reqwest::Client::builder().timeout(DELIVERY_TIMEOUT).build()?;
    let mut notifier = Notifier::new(config, external_url);
    notifier.log = log;
    let names: Vec<String> = notifier.config.webhooks.iter().map(|w| w.name.clone()).collect();
    notifier.keep_receivers(&names);
    {
        let mut status = hub.status.write().expect("notifier status");
        status.running = true;
        status.interval = notifier.config.interval;
        status.receivers = notifier
            .config
            .webhooks
            .iter()
            .map(|w| ReceiverStatus { name: w.name.clone(), format: w.format, sent: 0, failed: 0, last_error: None })
            .collect();
    }
    tokio::spawn(run(notifier, client, hub, log_path, engine, store));
    Ok(())
}

async fn run(
    mut notifier: Notifier,
    client: reqwest::Client,
    hub: Arc<Notifications>,
    log_path: PathBuf,
    engine: Option<JourneyEngine>,
    store: Store,
) {
    let interval = notifier.config.interval;
    loop {
        round(&mut notifier, &client, &hub, &log_path, engine.clone(), store.clone()).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = hub.wake.notified() => {}
        }
    }
}

/// Reads what the rules need without holding ingest up; `Err` when the round is to be skipped.
async fn observe(engine: Option<JourneyEngine>, store: Store) -> Result<Observed, String> {
    let read = tokio::task::spawn_blocking(move || {
        let ingest = store.count_findings(&ingest_kinds()).map_err(|e| format!("reading findings raised at ingest: {e}"))?;
        let engine = match engine {
            None => None,
            Some(engine) => {
                let mut tries = 0;
                loop {
                    if let Some(inputs) = engine.alert_inputs() {
                        break Some(inputs);
                    }
                    tries += 1;
                    if tries >= ENGINE_TRIES {
                        return Err("the journey engine stayed busy (rebuilding, or not started); the round was skipped".to_string());
                    }
                    std::thread::sleep(ENGINE_RETRY);
                }
            }
        };
        Ok(Observed { engine, ingest_findings: ingest.into_iter().map(|(k, n)| (k, n.max(0) as u64)).collect() })
    });
    read.await.map_err(|e| format!("the notifier's read failed: {e}"))?
}

async fn round(notifier: &mut Notifier, client: &reqwest::Client, hub: &Notifications, log_path: &Path, engine: Option<JourneyEngine>, store: Store) {
    let observed = match observe(engine, store).await {
        Ok(o) => o,
        Err(e) => {
            let mut status = hub.status.write().expect("notifier status");
            status.skipped += 1;
            status.last_error = Some(e);
            return;
        }
    };
    let now = Utc::now();
    let alerts = notifier.judge(&observed, now);
    let active = hub.silence(alerts, now);
    let mut outcomes = Vec::new();
    for (i, hook) in notifier.config.webhooks.clone().iter().enumerate() {
        for n in notifier.plan(&hook.name, &active, now) {
            let body = match hook.format {
                Format::Alertmanager => alertmanager_payload(&n, notifier.external_url()),
                Format::Plain => plain_payload(&n),
            };
            let outcome = deliver(client, &hook.url, &body).await;
            if outcome.is_ok() {
                notifier.delivered(&n, now);
            } else {
                tracing::warn!(message = "a notification was not delivered; it is sent again next round", receiver = %hook.name, group = %n.group_key);
            }
            outcomes.push((i, outcome));
        }
    }
    if notifier.dirty {
        let bytes = serde_json::to_vec_pretty(&notifier.log).expect("the notification log serializes");
        let path = log_path.to_path_buf();
        match tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await {
            Ok(Ok(())) => notifier.dirty = false,
            Ok(Err(e)) => tracing::warn!(message = "the notification log was not written; retrying next round", error = %e),
            Err(e) => tracing::warn!(message = "the notification log was not written; retrying next round", error = %e),
        }
    }
    let mut status = hub.status.write().expect("notifier status");
    for (i, outcome) in outcomes {
        let r = &mut status.receivers[i];
        match outcome {
            Ok(()) => r.sent += 1,
            Err(e) => {
                r.failed += 1;
                r.last_error = Some(e);
            }
        }
    }
    status.alerts = active;
    status.clock = observed.engine.as_ref().and_then(|e| e.clock);
    status.evaluated_at = Some(now);
    status.evaluations += 1;
    status.last_error = None;
}

/// POSTs a payload; `Err` with a sentence unless the receiver answers 2xx.
async fn deliver(client: &reqwest::Client, url: &str, body: &Value) -> Result<(), String> {
    match client.post(url).json(body).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let code = r.status().as_u16();
            let text: String = r.text().await.unwrap_or_default().chars().take(300).collect();
            Err(format!("the receiver answered HTTP {code}: {}", text.trim()))
        }
        Err(e) => Err(format!("the receiver could not be reached: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_slo::{Evaluation, Objective, RULES, Severity, Tally};

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap().to_utc() + TimeDelta::minutes(minutes)
    }

    fn config() -> NotifyConfig {
        NotifyConfig {
            repeat_interval: Duration::from_secs(4 * 3600),
            stall_surge: 3,
            webhooks: vec![Webhook { name: "pager".into(), url: "http://127.0.0.1:9/".into(), format: Format::Alertmanager }],
            ..NotifyConfig::default()
        }
    }

    fn notifier() -> Notifier {
        Notifier::new(config(), "http://causeway.test/".into())
    }

    fn objective(name: &str, sli: Sli) -> Objective {
        Objective { name: name.into(), sli, target: 0.99, window_minutes: 1440 }
    }

    /// An SLO view burning at `rate` on every window.
    fn slo(name: &str, sli: Sli, rate: f64) -> SloView {
        let burn_rates: Vec<(&'static str, f64)> = causeway_slo::WINDOWS.iter().map(|(w, _)| (*w, rate)).collect();
        let firing: Vec<_> = RULES.iter().filter(|r| rate > r.factor).copied().collect();
        SloView {
            objective: objective(name, sli),
            totals: Tally { good: 60, bad: 40 },
            evaluation: Evaluation {
                window: Tally { good: 60, bad: 40 },
                sli: Some(0.6),
                budget_remaining: 1.0 - rate,
                burn_rates,
                alert: firing.iter().map(|r| r.severity).max(),
                firing,
            },
        }
    }

    fn observed(slos: Vec<SloView>, stalled: Vec<(&str, u64)>, open: Vec<(&'static str, u64)>) -> Observed {
        Observed {
            engine: Some(AlertInputs {
                clock: Some(t(0)),
                slos,
                stalled: stalled.into_iter().map(|(j, n)| (j.to_string(), n)).collect(),
                open_by_kind: open,
            }),
            ingest_findings: Vec::new(),
        }
    }

    fn active(alerts: Vec<Alert>) -> Vec<ActiveAlert> {
        Notifications::in_memory().silence(alerts, t(0))
    }

    /// One round: judge, plan for `pager`, deliver everything.
    fn round(n: &mut Notifier, o: &Observed, hub: &Notifications, now: DateTime<Utc>) -> Vec<Notification> {
        let alerts = n.judge(o, now);
        let active = hub.silence(alerts, now);
        let planned = n.plan("pager", &active, now);
        for p in &planned {
            n.delivered(p, now);
        }
        planned
    }

    fn ordering() -> Sli {
        Sli::EventSuccess { context: "ordering".into() }
    }

    #[test]
    fn a_burning_slo_is_one_alert_with_its_subject_severity_and_runbook() {
        let mut n = notifier();
        let o = observed(vec![slo("order-completion", Sli::JourneyCompletion { journey: "order".into() }, 20.0)], vec![], vec![]);
        let alerts = n.judge(&o, t(0));
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        let labels: Vec<(&str, &str)> = a.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            labels,
            [("alertname", "SLOBurnRate"), ("journey", "order"), ("severity", "page"), ("sli", "journey_completion"), ("slo", "order-completion")]
        );
        assert_eq!(a.annotations["summary"], "order-completion: journey order burns its error budget at 20× over 1h");
        assert!(a.annotations["description"].contains("above the 14× that calls for a page"), "{}", a.annotations["description"]);
        assert_eq!(a.annotations["runbook_url"], "http://causeway.test/runbooks/journeys/order");
        assert_eq!(a.generator_url, "http://causeway.test/v1/slo");
        assert_eq!(a.fingerprint().len(), 16);
        assert_eq!(a.group_key(), r#"{}:{alertname="SLOBurnRate", severity="page", slo="order-completion"}"#);
        // A burn that calls for a ticket only, and one that calls for nothing.
        let o = observed(vec![slo("placing", ordering(), 4.0), slo("calm", ordering(), 0.5)], vec![], vec![]);
        let alerts = n.judge(&o, t(1));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].labels["severity"], "ticket");
        assert_eq!(alerts[0].labels["context"], "ordering");
        assert_eq!(alerts[0].annotations["runbook_url"], "http://causeway.test/runbooks#findings");
    }

    #[test]
    fn runbook_links_name_the_generated_runbooks() {
        let loaded = causeway_model::load_str(
            "m.yaml",
            r#"
name: shop
contexts:
  ordering: {owner: team-orders, services: [order-service]}
events:
  OrderPlaced: {context: ordering, schema: {type: object}}
  OrderShipped: {context: ordering, schema: {type: object}}
policies:
  ship order: {when: OrderPlaced, then: [OrderShipped], within: 1m}
journeys:
  order/v2:
    key: /orderId
    milestones: [OrderPlaced, OrderShipped]
    outcomes: {shipped: [OrderShipped]}
"#,
        );
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let files: Vec<String> = causeway_gen::runbooks(&loaded.model).into_iter().map(|f| f.path).collect();
        let ordering = causeway_gen::slo_runbook(&Sli::EventSuccess { context: "ordering".into() });
        for path in [causeway_gen::journey_path("order/v2"), causeway_gen::policy_path("ship order"), causeway_gen::finding_path("stalled")] {
            assert!(files.contains(&path), "{path} among {files:?}");
        }
        assert!(files.contains(&ordering.replace("#findings", "")));
        let mut config = config();
        config.runbook_base = Some("https://git.example/runbooks".into());
        let n = Notifier::new(config, "http://causeway.test".into());
        assert_eq!(n.runbook_url(&causeway_gen::policy_path("ship order")), "https://git.example/runbooks/policies/ship_order.md");
    }

    #[test]
    fn a_group_is_sent_once_then_again_after_the_repeat_interval_and_resolved_once() {
        let hub = Notifications::in_memory();
        let mut n = notifier();
        let burning = observed(vec![slo("placing", ordering(), 50.0)], vec![], vec![]);
        let sent = round(&mut n, &burning, &hub, t(0));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, GroupStatus::Firing);
        assert_eq!(sent[0].group_labels["slo"], "placing");
        let fingerprint = sent[0].alerts[0].fingerprint.clone();
        // The same state is not sent again, whatever its annotations say now.
        assert!(round(&mut n, &observed(vec![slo("placing", ordering(), 60.0)], vec![], vec![]), &hub, t(1)).is_empty());
        assert!(round(&mut n, &burning, &hub, t(239)).is_empty());
        // Four hours after the last delivery: again, with the first time it was seen.
        let again = round(&mut n, &burning, &hub, t(240));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].alerts[0].fingerprint, fingerprint);
        assert_eq!(again[0].alerts[0].alert.starts_at, t(0));
        assert!(round(&mut n, &burning, &hub, t(241)).is_empty());
        // It clears: one resolved notification with the alert as sent, then nothing.
        let calm = observed(vec![slo("placing", ordering(), 0.0)], vec![], vec![]);
        let resolved = round(&mut n, &calm, &hub, t(250));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].status, GroupStatus::Resolved);
        assert_eq!(resolved[0].alerts[0].fingerprint, fingerprint);
        assert_eq!(resolved[0].alerts[0].ends_at, Some(t(250)));
        let text = plain_payload(&resolved[0])["text"].as_str().unwrap().to_string();
        assert!(
            text.starts_with(
                "[PAGE] RESOLVED: placing: context ordering burns its error budget at 50× over 1h (from 2026-03-01T12:00:00Z to 2026-03-01T16:10:00Z)."
            ),
            "{text}"
        );
        assert!(round(&mut n, &calm, &hub, t(251)).is_empty());
        assert!(round(&mut n, &calm, &hub, t(600)).is_empty());
        // It fires again: a new notification, started anew.
        let back = round(&mut n, &burning, &hub, t(700));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].alerts[0].alert.starts_at, t(700));
    }

    #[test]
    fn a_change_of_severity_resolves_one_group_and_fires_another() {
        let hub = Notifications::in_memory();
        let mut n = notifier();
        round(&mut n, &observed(vec![slo("placing", ordering(), 50.0)], vec![], vec![]), &hub, t(0));
        let sent = round(&mut n, &observed(vec![slo("placing", ordering(), 4.0)], vec![], vec![]), &hub, t(5));
        let by_group: Vec<(String, &str)> = sent.iter().map(|s| (s.group_labels["severity"].clone(), s.status.as_str())).collect();
        assert_eq!(by_group, [("page".to_string(), "resolved"), ("ticket".to_string(), "firing")]);
    }

    #[test]
    fn groups_are_per_receiver_and_a_failed_delivery_is_sent_next_round() {
        let hub = Notifications::in_memory();
        let mut n = notifier();
        let burning = observed(vec![slo("placing", ordering(), 50.0), slo("shipping", ordering(), 50.0)], vec![], vec![]);
        let alerts = n.judge(&burning, t(0));
        let active = hub.silence(alerts, t(0));
        let planned = n.plan("pager", &active, t(0));
        assert_eq!(planned.len(), 2, "one group per SLO");
        // Only the first is delivered; the other failed.
        n.delivered(&planned[0], t(0));
        let retried = n.plan("pager", &active, t(1));
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].group_key, planned[1].group_key);
        // Another receiver has its own record.
        assert_eq!(n.plan("chat", &active, t(1)).len(), 2);
    }

    #[test]
    fn a_silenced_alert_is_not_sent_until_its_silence_ends() {
        let hub = Notifications::in_memory();
        let mut n = notifier();
        let new = NewSilence {
            matchers: BTreeMap::from([("slo".to_string(), "placing".to_string())]),
            ends: Ends::After("30m".into()),
            comment: "deploying the fix".into(),
            created_by: "ops".into(),
        };
        let silence = hub.add_silence(new, t(0)).unwrap();
        assert_eq!(silence.ends_at, t(30));
        let burning = observed(vec![slo("placing", ordering(), 50.0)], vec![], vec![]);
        let alerts = n.judge(&burning, t(1));
        let active = hub.silence(alerts, t(1));
        assert_eq!(active[0].state(), "silenced");
        assert_eq!(active[0].silenced_by, std::slice::from_ref(&silence.id));
        assert!(n.plan("pager", &active, t(1)).is_empty());
        assert!(round(&mut n, &burning, &hub, t(29)).is_empty());
        // The silence ends while the alert still fires: it is sent.
        let sent = round(&mut n, &burning, &hub, t(30));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, GroupStatus::Firing);
        // Silenced after it was sent: no resolve while it is still active, one once it clears.
        let again = hub.add_silence(NewSilence { ends: Ends::After("1h".into()), ..new_silence() }, t(31)).unwrap();
        assert!(round(&mut n, &burning, &hub, t(32)).is_empty());
        let calm = observed(vec![slo("placing", ordering(), 0.0)], vec![], vec![]);
        let resolved = round(&mut n, &calm, &hub, t(33));
        assert_eq!(resolved.iter().map(|r| r.status).collect::<Vec<_>>(), [GroupStatus::Resolved]);
        // Expired by hand.
        assert_eq!(hub.expire_silence(&again.id, t(34)).unwrap().ends_at, t(34));
        assert!(matches!(hub.expire_silence(&again.id, t(35)), Err(SilenceError::AlreadyExpired(_))));
        assert!(matches!(hub.expire_silence("nope", t(35)), Err(SilenceError::NotFound(_))));
        let listed = hub.silences(t(35));
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|s| s.state(t(35)) == "expired"));
        // Expired silences are listed for a day.
        assert!(hub.silences(t(35 + 24 * 60)).is_empty());
    }

    fn new_silence() -> NewSilence {
        NewSilence {
            matchers: BTreeMap::from([("slo".to_string(), "placing".to_string())]),
            ends: Ends::After("2h".into()),
            comment: "why".into(),
            created_by: "ops".into(),
        }
    }

    #[test]
    fn silences_are_checked() {
        let now = t(0);
        let refused = |s: NewSilence| match s.check(now) {
            Err(SilenceError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(NewSilence { matchers: BTreeMap::new(), ..new_silence() }).contains("at least one matcher"));
        assert!(refused(NewSilence { matchers: BTreeMap::from([("1x".into(), "a".into())]), ..new_silence() }).contains("not a label name"));
        assert!(refused(NewSilence { matchers: BTreeMap::from([("slo".into(), "".into())]), ..new_silence() }).contains("exact value"));
        assert!(refused(NewSilence { ends: Ends::After("soon".into()), ..new_silence() }).starts_with("duration: 'soon' is not a duration"));
        assert!(refused(NewSilence { ends: Ends::After(" 2h".into()), ..new_silence() }).contains("spaces around it"));
        assert!(refused(NewSilence { ends: Ends::After("0s".into()), ..new_silence() }).contains("zero"));
        assert!(refused(NewSilence { ends: Ends::After("400d".into()), ..new_silence() }).contains("longer than a silence may last"));
        assert!(refused(NewSilence { ends: Ends::At("2026-03-01T11:00:00Z".into()), ..new_silence() }).contains("has passed"));
        assert!(refused(NewSilence { ends: Ends::At("tomorrow".into()), ..new_silence() }).starts_with("ends_at: "));
        assert!(refused(NewSilence { comment: " ".into(), ..new_silence() }).contains("say why"));
        let s = NewSilence { ends: Ends::At("2026-03-01T14:00:00+01:00".into()), ..new_silence() }.check(now).unwrap();
        assert_eq!((s.starts_at, s.ends_at), (now, t(60)));
    }

    #[test]
    fn silences_survive_a_reopen_of_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Notifications::open(dir.path()).unwrap();
        let s = hub.add_silence(new_silence(), Utc::now()).unwrap();
        assert_eq!(s.id.len(), 36);
        drop(hub);
        let hub = Notifications::open(dir.path()).unwrap();
        assert_eq!(hub.silences(Utc::now()), std::slice::from_ref(&s));
        assert!(!dir.path().join("silences.json.tmp").exists());
        std::fs::write(dir.path().join(SILENCES_FILE), "{").unwrap();
        let e = Notifications::open(dir.path()).err().expect("a corrupt file is refused");
        assert!(e.to_string().contains("remove it to start without silences"), "{e}");
    }

    #[test]
    fn a_stall_surge_fires_at_the_threshold_and_resolves_below_it() {
        let hub = Notifications::in_memory();
        let mut n = notifier();
        assert!(round(&mut n, &observed(vec![], vec![("order", 2)], vec![]), &hub, t(0)).is_empty());
        let sent = round(&mut n, &observed(vec![], vec![("order", 3), ("refund", 0)], vec![]), &hub, t(1));
        assert_eq!(sent.len(), 1);
        let a = &sent[0].alerts[0].alert;
        assert_eq!(
            (a.labels["alertname"].as_str(), a.labels["journey"].as_str(), a.labels["severity"].as_str()),
            ("JourneyStallSurge", "order", "ticket")
        );
        assert_eq!(a.generator_url, "http://causeway.test/v1/journeys?journey=order&state=stalled");
        assert!(round(&mut n, &observed(vec![], vec![("order", 7)], vec![]), &hub, t(2)).is_empty(), "more of the same is no news");
        let resolved = round(&mut n, &observed(vec![], vec![("order", 2)], vec![]), &hub, t(3));
        assert_eq!(resolved[0].status, GroupStatus::Resolved);
    }

    #[test]
    fn new_finding_kinds_are_announced_once_after_the_baseline() {
        let hub = Notifications::in_memory();
        let mut n = notifier();
        // The first round records what is there: nothing is announced.
        assert!(round(&mut n, &observed(vec![], vec![], vec![("stalled", 4)]), &hub, t(0)).is_empty());
        let mut o = observed(vec![], vec![], vec![("stalled", 4), ("missing_reaction", 1)]);
        o.ingest_findings = vec![("schema_error".into(), 2)];
        let sent = round(&mut n, &o, &hub, t(1));
        let kinds: Vec<&str> = sent.iter().map(|s| s.group_labels["kind"].as_str()).collect();
        assert_eq!(kinds, ["missing_reaction", "schema_error"]);
        assert_eq!(sent[0].alerts[0].alert.annotations["runbook_url"], "http://causeway.test/runbooks/findings/missing_reaction");
        // missing_reaction resolves when none is open; schema_error (never resolved) after the repeat interval.
        o.engine.as_mut().unwrap().open_by_kind = vec![("stalled", 4), ("missing_reaction", 0)];
        let sent = round(&mut n, &o, &hub, t(2));
        assert_eq!(
            sent.iter().map(|s| (s.group_labels["kind"].as_str(), s.status)).collect::<Vec<_>>(),
            [("missing_reaction", GroupStatus::Resolved)]
        );
        assert!(round(&mut n, &o, &hub, t(200)).is_empty());
        let sent = round(&mut n, &o, &hub, t(241));
        assert_eq!(sent.iter().map(|s| (s.group_labels["kind"].as_str(), s.status)).collect::<Vec<_>>(), [("schema_error", GroupStatus::Resolved)]);
        // A kind seen before is not announced again.
        o.engine.as_mut().unwrap().open_by_kind = vec![("missing_reaction", 3)];
        assert!(round(&mut n, &o, &hub, t(300)).is_empty());
    }

    #[test]
    fn payloads_carry_the_group_and_each_alert() {
        let mut n = notifier();
        let alerts = n.judge(&observed(vec![slo("placing", ordering(), 50.0)], vec![], vec![]), t(0));
        let planned = n.plan("pager", &active(alerts), t(0));
        let am = alertmanager_payload(&planned[0], n.external_url());
        assert_eq!(am["version"], "4");
        assert_eq!(am["status"], "firing");
        assert_eq!(am["receiver"], "pager");
        assert_eq!(am["truncatedAlerts"], 0);
        assert_eq!(am["externalURL"], "http://causeway.test");
        assert_eq!(am["groupLabels"], json!({"alertname": "SLOBurnRate", "severity": "page", "slo": "placing"}));
        assert_eq!(am["commonLabels"]["context"], "ordering");
        assert_eq!(am["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(am["alerts"][0]["fingerprint"], planned[0].alerts[0].fingerprint);
        let plain = plain_payload(&planned[0]);
        assert_eq!(plain["group"], "slo=placing");
        assert_eq!(plain["severity"], "page");
        let text = plain["text"].as_str().unwrap();
        assert!(text.starts_with("[PAGE] FIRING: placing: context ordering burns its error budget at 50× over 1h. SLO placing"), "{text}");
        assert!(text.ends_with("Runbook: http://causeway.test/runbooks#findings"), "{text}");
        let _ = Severity::Page;
    }
}
