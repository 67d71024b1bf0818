//! Running the operability steps against the in-process proxy: `metrics` scrapes its `/metrics`
//! (Prometheus text) and checks how series moved; `reload` changes its config file and asks it to
//! reload through Admin `ReloadConfig`, as an operator would. A scenario that reloads gets the
//! run's config back when it ends, passed or failed.

use super::Failure;
use super::compare::num;
use super::exec::{Session, Vars, locate};
use crate::scenario::model::{ConfigChange, MetricsStep, ReloadStep, SeriesExpect, Step};
use prism_proto::admin::v1::ReloadConfigRequest;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One exposed sample: series name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (`rpc_server_call_duration_seconds_count`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// One scrape: the samples, and the family names declared by `# TYPE` lines.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    samples: Vec<Sample>,
    families: Vec<String>,
}

/// The readings a scenario run keeps: the one at its start (under `""`) and its marks.
#[derive(Default)]
pub(crate) struct Marks(Mutex<HashMap<String, Reading>>);

/// The mark of the scenario's start.
const START: &str = "";

/// How long a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

impl Reading {
    /// Parses Prometheus text exposition (format 0.0.4).
    pub fn parse(text: &str) -> Result<Reading, String> {
        let mut reading = Reading::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some(name) = rest.split_whitespace().next() {
                    reading.families.push(name.to_string());
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line).map_err(|e| format!("line {}: {e}: {line}", i + 1))?;
            reading.samples.push(sample);
        }
        Ok(reading)
    }

    /// Whether the proxy exports `series` at all (as a sample now, or as a declared family that
    /// has no sample yet, such as a counter of a status no call has ended with).
    fn knows(&self, series: &str) -> bool {
        self.samples.iter().any(|s| s.name == series)
            || ["", "_total", "_count", "_sum", "_bucket"]
                .iter()
                .any(|suffix| {
                    series
                        .strip_suffix(suffix)
                        .is_some_and(|family| self.families.iter().any(|f| f == family))
                })
    }

    /// The samples `expect` selects in `session`'s scenario: its labels, plus the scenario's
    /// namespace and the target's backends where the expectation leaves those labels open.
    fn select<'r>(&'r self, expect: &SeriesExpect, session: &Session) -> Vec<&'r Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == expect.series)
            .filter(|s| {
                expect
                    .labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k) == Some(v))
            })
            .filter(|s| {
                expect.labels.contains_key("namespace")
                    || s.labels
                        .get("namespace")
                        .is_none_or(|ns| *ns == session.namespace)
            })
            .filter(|s| {
                expect.labels.contains_key("backend")
                    || s.labels
                        .get("backend")
                        .is_none_or(|b| session.backends.contains(b))
            })
            .collect()
    }
}

/// `name{label="value",…} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut end = None;
        loop {
            // Skip separators, then read `key="value"` or the closing brace.
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} has no quoted value"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    other => value.push(other),
                }
            }
            if !closed {
                return Err(format!("label {key}'s value is not closed"));
            }
            labels.insert(key, value);
        }
        let end = end.ok_or("labels are not closed")?;
        rest = &inner[end + 1..];
    }
    let raw = rest.split_whitespace().next().ok_or("no value")?;
    let value = match raw {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .map_err(|_| format!("value {other:?} is not a number"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// `GET http://ADDR/PATH`: the body of a 200 answer; anything else is an error naming it.
async fn get(admin: SocketAddr, path: &str) -> Result<String, String> {
    let url = format!("http://{admin}{path}");
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: prism\r\nAccept: text/plain\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(SCRAPE_TIMEOUT, get)
        .await
        .map_err(|_| format!("GET {url} took over {SCRAPE_TIMEOUT:?}"))?
        .map_err(|e| format!("GET {url}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {url}: not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("GET {url} answered {status}: {}", body.trim()));
    }
    Ok(body.to_string())
}

/// Reads `http://ADDR/metrics`.
pub async fn scrape(admin: SocketAddr) -> Result<Reading, String> {
    Reading::parse(&get(admin, "/metrics").await?)
}

/// Waits up to `within` for `proxy`'s `/readyz` to answer 200 (every backend up, not draining);
/// the last answer when it does not.
pub async fn wait_ready(
    proxy: &crate::provision::RunningProxy,
    within: std::time::Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match get(proxy.admin, "/readyz").await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

fn admin_of(session: &Session, what: &str) -> Result<SocketAddr, Failure> {
    session.proxy.as_ref().map(|p| p.admin).ok_or_else(|| {
        Failure::message(format!(
            "{what} needs the harness's in-process proxy (its admin listener)"
        ))
    })
}

/// Keeps the reading a scenario's `moved` expectations start from.
pub async fn mark_start(session: &Session) -> Result<(), Failure> {
    let reading = scrape(admin_of(session, "a metrics step")?)
        .await
        .map_err(|e| Failure::message(format!("reading the proxy's metrics at the start: {e}")))?;
    keep(session, START, reading);
    Ok(())
}

fn keep(session: &Session, name: &str, reading: Reading) {
    let marks = session.family::<Marks>();
    let mut marks = marks.0.lock().unwrap_or_else(|p| p.into_inner());
    marks.insert(name.to_string(), reading);
}

/// The sum of `samples`, as a count.
fn count(samples: &[&Sample], series: &str) -> Result<u64, Failure> {
    let sum: f64 = samples.iter().map(|s| s.value).sum();
    if sum < 0.0 || sum.fract() != 0.0 || !sum.is_finite() {
        return Err(Failure::message(format!(
            "{series} sums to {sum}, which is not a count (expectations compare counters and counting gauges)"
        )));
    }
    Ok(sum as u64)
}

fn show(samples: &[&Sample]) -> String {
    if samples.is_empty() {
        return "no matching series".into();
    }
    samples
        .iter()
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("{{{}}} {}", labels.join(","), s.value)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A `metrics` step: one scrape, every expectation checked, then the mark kept.
pub async fn run_metrics(
    session: &Session,
    step: &Step,
    metrics: &MetricsStep,
    vars: &mut Vars,
) -> Result<(), Failure> {
    let what = Some("metrics".to_string());
    let admin = admin_of(session, "a metrics step").map_err(|f| locate(step, what.clone(), f))?;
    let now = scrape(admin)
        .await
        .map_err(|e| locate(step, what.clone(), Failure::message(e)))?;
    let mut saves = Vec::new();
    for expect in &metrics.expect {
        check(session, &now, expect, vars, &mut saves)
            .map_err(|f| locate(step, Some(format!("metrics: {}", expect.series)), f))?;
    }
    vars.extend(saves);
    if let Some(mark) = &metrics.mark {
        keep(session, mark, now);
    }
    Ok(())
}

fn check(
    session: &Session,
    now: &Reading,
    expect: &SeriesExpect,
    vars: &Vars,
    saves: &mut Vec<(String, String)>,
) -> Result<(), Failure> {
    if !now.knows(&expect.series) {
        return Err(Failure::message(format!(
            "the proxy exports no series {} (see its /metrics)",
            expect.series
        )));
    }
    let selected = now.select(expect, session);
    let total = count(&selected, &expect.series)?;
    let detail = |f: Failure, from: Option<u64>| {
        let mut f = f;
        let base = from.map_or(String::new(), |b| format!(" (from {b} to {total})"));
        f.message = format!("{}{base}; series now: {}", f.message, show(&selected));
        f
    };
    if let Some(expected) = &expect.value {
        num("value", total, Some(expected), vars, saves).map_err(|f| detail(f, None))?;
    }
    if let Some(expected) = &expect.moved {
        let mark = expect.since.as_deref().unwrap_or(START);
        let marks = session.family::<Marks>();
        let before = {
            let marks = marks.0.lock().unwrap_or_else(|p| p.into_inner());
            let reading = marks.get(mark).ok_or_else(|| {
                Failure::message(format!("no metrics reading was kept as '{mark}'"))
            })?;
            count(&reading.select(expect, session), &expect.series)?
        };
        // A counter that went down was reset (a proxy restart): growth is what it counted since.
        let moved = total.checked_sub(before).unwrap_or(total);
        num("moved", moved, Some(expected), vars, saves).map_err(|f| detail(f, Some(before)))?;
    }
    Ok(())
}

/// A `reload` step: the change written to the proxy's config file, then Admin `ReloadConfig`.
pub async fn run_reload(
    session: &Session,
    step: &Step,
    reload: &ReloadStep,
) -> Result<(), Failure> {
    let (verb, which) = reload.change.name();
    let what = Some(format!("reload: {verb} {which}"));
    let at = |f: Failure| locate(step, what.clone(), f);
    let proxy = session.proxy.clone().ok_or_else(|| {
        at(Failure::message(
            "reload needs the harness's in-process proxy",
        ))
    })?;
    let env = |e: crate::provision::ProvisionError| at(Failure::message(e.to_string()));
    let written = proxy.written_config().await;
    let mut next = written.clone();
    // What a successful reload must report: (added, removed).
    let mut names = (Vec::new(), Vec::new());
    let mut invalid_line = None;
    match reload.change {
        ConfigChange::Remove(ns) => {
            let name = session.namespace_name(ns).map_err(at)?.to_string();
            if next.namespaces.remove(&name).is_none() {
                return Err(at(Failure::message(format!(
                    "namespace '{name}' is not in the config file (a step before removed it)"
                ))));
            }
            names.1.push(name);
            proxy.write_config(&next).await.map_err(env)?;
        }
        ConfigChange::Add(ns) => {
            let name = session.namespace_name(ns).map_err(at)?.to_string();
            let started = proxy.started_config().await;
            let config = started.namespaces.get(&name).cloned().ok_or_else(|| {
                at(Failure::message(format!(
                    "namespace '{name}' is not in the run's config"
                )))
            })?;
            if next.namespaces.insert(name.clone(), config).is_some() {
                return Err(at(Failure::message(format!(
                    "namespace '{name}' is in the config file already (remove it first)"
                ))));
            }
            names.0.push(name);
            proxy.write_config(&next).await.map_err(env)?;
        }
        ConfigChange::Invalid => {
            let text = serde_saphyr::to_string(&written)
                .map_err(|e| at(Failure::message(format!("cannot render the config: {e}"))))?;
            let text = format!("{}\n", text.trim_end());
            invalid_line = Some(text.lines().count() + 1);
            proxy
                .write_text(&format!("{text}namespacess: {{}}\n"))
                .map_err(env)?;
        }
    }
    let expected_error = reload.error.or(match reload.change {
        ConfigChange::Invalid => Some(tonic::Code::FailedPrecondition.into()),
        _ => None,
    });
    let admin = session.admin_client(reload.token.as_deref()).map_err(at)?;
    let answer = admin.clone().reload_config(ReloadConfigRequest {}).await;
    match (answer, expected_error) {
        (Ok(done), None) => {
            let done = done.into_inner();
            let got = (
                done.namespaces_added.clone(),
                done.namespaces_removed.clone(),
            );
            if got != names || !done.namespaces_changed.is_empty() {
                return Err(at(Failure {
                    message: "the reload changed other namespaces than the step did".into(),
                    expected: Some(format!(
                        "added {:?}, removed {:?}, changed []",
                        names.0, names.1
                    )),
                    actual: Some(format!(
                        "added {:?}, removed {:?}, changed {:?}",
                        done.namespaces_added, done.namespaces_removed, done.namespaces_changed
                    )),
                    ..Failure::default()
                }));
            }
            session.note(format!(
                "line {}: reloaded to generation {}",
                step.loc.line, done.config_generation
            ));
            Ok(())
        }
        (Ok(done), Some(code)) => {
            proxy.write_config(&written).await.map_err(env)?;
            Err(at(Failure {
                message: "the reload was applied, not refused".into(),
                expected: Some(format!("error {code}")),
                actual: Some(format!(
                    "generation {}",
                    done.into_inner().config_generation
                )),
                ..Failure::default()
            }))
        }
        (Err(status), expected) => {
            // The running config stays: so does the file, for the reloads after this one.
            proxy.write_config(&written).await.map_err(env)?;
            let got = crate::scenario::code::StatusCode::from(status.code());
            if expected != Some(got) {
                return Err(at(Failure {
                    message: format!("the reload was refused: {}", status.message()),
                    expected: Some(expected.map_or("a reload".into(), |c| format!("error {c}"))),
                    actual: Some(format!("error {got}")),
                    ..Failure::default()
                }));
            }
            if let Some(line) = invalid_line {
                let place = format!("{}:{line}:1", proxy.config_file.display());
                if !status.message().contains(&place) {
                    return Err(at(Failure {
                        message: "the refusal does not name the misspelled key's place".into(),
                        expected: Some(format!("a message containing {place:?}")),
                        actual: Some(status.message().to_string()),
                        ..Failure::default()
                    }));
                }
            }
            Ok(())
        }
    }
}

/// Puts the run's config back after a scenario that reloaded (whatever its outcome), so the
/// scenarios after it find every namespace.
pub async fn restore(session: &Session) -> Result<(), Failure> {
    let Some(proxy) = session.proxy.clone() else {
        return Ok(());
    };
    let started = proxy.started_config().await;
    if proxy.written_config().await == started {
        return Ok(());
    }
    proxy
        .write_config(&started)
        .await
        .map_err(|e| Failure::message(e.to_string()))?;
    session
        .admin_client(None)?
        .reload_config(ReloadConfigRequest {})
        .await
        .map_err(|s| {
            Failure::message(format!(
                "putting the run's config back after the scenario failed: {}: {}",
                s.code(),
                s.message()
            ))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_labels_escapes_and_families() {
        let text = "# HELP x A thing.\n# TYPE rpc_server_call_duration_seconds histogram\nrpc_server_call_duration_seconds_count{rpc_method=\"a/B\",namespace=\"q\\\"x\"} 3\nprism_draining 0\nup{a=\"1\",} +Inf 123\n";
        let r = Reading::parse(text).unwrap();
        assert_eq!(r.samples.len(), 3);
        assert_eq!(r.samples[0].name, "rpc_server_call_duration_seconds_count");
        assert_eq!(r.samples[0].labels["namespace"], "q\"x");
        assert_eq!(r.samples[0].value, 3.0);
        assert_eq!(r.samples[1].labels.len(), 0);
        assert!(r.samples[2].value.is_infinite());
        assert!(r.knows("rpc_server_call_duration_seconds_sum"));
        assert!(!r.knows("rpc_server_calls_total"));
        assert!(Reading::parse("x{a=\"1} 2\n").is_err());
        assert!(Reading::parse("x{a=1} 2\n").is_err());
        assert!(Reading::parse("x not-a-number\n").is_err());
    }
}
