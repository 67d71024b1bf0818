//! The `container` provisioner: Redis and PostgreSQL in containers via testcontainers, compiled in with
//! the `container` cargo feature. Without a Docker-compatible socket it reports itself unavailable at
//! once, with the reason, instead of waiting on a connection.

use std::path::Path;

/// Where a Docker-compatible engine answers, if anywhere: `DOCKER_HOST`, else the default socket.
pub fn docker_endpoint() -> Result<String, String> {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if !host.is_empty() {
            return Ok(host);
        }
    }
    let socket = Path::new("/var/run/docker.sock");
    if !socket.exists() {
        return Err(
            "no Docker socket (/var/run/docker.sock is missing and DOCKER_HOST is unset)".into(),
        );
    }
    std::os::unix::net::UnixStream::connect(socket)
        .map(|_| format!("unix://{}", socket.display()))
        .map_err(|e| {
            format!(
                "the Docker socket {} does not answer: {e}",
                socket.display()
            )
        })
}

#[cfg(feature = "container")]
mod imp {
    use testcontainers::ContainerAsync;
    use testcontainers::runners::AsyncRunner;
    use testcontainers_modules::{postgres::Postgres, redis::Redis};

    /// A running container; stopped and removed when dropped.
    pub enum ContainerHandle {
        /// Redis.
        Redis(ContainerAsync<Redis>),
        /// PostgreSQL.
        Postgres(ContainerAsync<Postgres>),
    }

    /// Starts a container for `backend` and returns it with its URL.
    pub async fn start(backend: &str) -> Result<(ContainerHandle, String), String> {
        super::docker_endpoint()?;
        let err = |e: testcontainers::TestcontainersError| e.to_string();
        match backend {
            "redis" => {
                let c = Redis::default().start().await.map_err(err)?;
                let port = c.get_host_port_ipv4(6379).await.map_err(err)?;
                let host = c.get_host().await.map_err(err)?;
                Ok((ContainerHandle::Redis(c), format!("redis://{host}:{port}")))
            }
            "postgres" => {
                let c = Postgres::default().start().await.map_err(err)?;
                let port = c.get_host_port_ipv4(5432).await.map_err(err)?;
                let host = c.get_host().await.map_err(err)?;
                Ok((
                    ContainerHandle::Postgres(c),
                    format!("postgres://postgres:postgres@{host}:{port}/postgres"),
                ))
            }
            other => Err(format!("no container image for backend '{other}'")),
        }
    }
}

#[cfg(not(feature = "container"))]
mod imp {
    /// A running container (this build has no container support, so none is ever created).
    pub enum ContainerHandle {}

    /// Always unavailable in this build.
    pub async fn start(_backend: &str) -> Result<(ContainerHandle, String), String> {
        super::docker_endpoint()?;
        Err("prism-conform was built without the `container` feature (cargo build --features container)".into())
    }
}

pub use imp::{ContainerHandle, start};

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_an_engine_it_is_unavailable_at_once() {
        if docker_endpoint().is_ok() {
            return; // an engine is present here; the fast-failure path is not reachable
        }
        let started = std::time::Instant::now();
        let err = start("redis")
            .await
            .err()
            .expect("no container without an engine");
        assert!(err.contains("Docker socket"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
