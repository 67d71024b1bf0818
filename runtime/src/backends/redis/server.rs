//! What the Redis server is, read once at connect: a Redis Cluster node is refused (every Prism
//! script touches several keys of one queue or one key's index, which a cluster spreads over
//! nodes: each call would fail `CROSSSLOT` or `MOVED`), and its persistence settings say whether an
//! acknowledged write survives the server's crash (`appendonly yes` with `appendfsync always`:
//! the append-only file is written and fsynced before each reply).

use super::conn::Conn;
use crate::secret::SecretUrl;
use redis::{ErrorKind, RedisError};
use std::collections::HashMap;

/// Whether acknowledged writes are durable on the server behind `conn`; an error when it is a
/// cluster node.
pub(super) async fn check(conn: &mut Conn, url: &SecretUrl) -> Result<bool, RedisError> {
    let cluster: String = redis::cmd("INFO").arg("cluster").query_async(conn).await?;
    if cluster.lines().any(|l| l.trim() == "cluster_enabled:1") {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "the server is a Redis Cluster node",
            "the redis backend needs a standalone server (or a replica set's primary): Redis Cluster is not supported yet, and its calls would fail CROSSSLOT or MOVED".to_string(),
        )));
    }
    let settings: Result<HashMap<String, String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query_async(conn)
        .await;
    let durable = match settings {
        Ok(settings) => {
            let of = |k: &str| settings.get(k).map_or("?", String::as_str).to_string();
            let (appendonly, appendfsync) = (of("appendonly"), of("appendfsync"));
            let durable = durable(&appendonly, &appendfsync);
            tracing::info!(url = %url, appendonly, appendfsync, durable, "redis persistence: keyvalue.durable and queue.durable are declared only with appendonly yes and appendfsync always");
            durable
        }
        Err(e) => {
            tracing::warn!(url = %url, error = %e, "cannot read the redis server's persistence settings (CONFIG GET refused?): keyvalue.durable and queue.durable not declared");
            false
        }
    };
    Ok(durable)
}

/// Whether these settings fsync every write before Redis answers it.
fn durable(appendonly: &str, appendfsync: &str) -> bool {
    appendonly.eq_ignore_ascii_case("yes") && appendfsync.eq_ignore_ascii_case("always")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_append_only_file_fsynced_on_every_write_is_durable() {
        assert!(durable("yes", "always"));
        assert!(!durable("yes", "everysec"));
        assert!(!durable("no", "always"));
        assert!(!durable("?", "?"));
    }
}
