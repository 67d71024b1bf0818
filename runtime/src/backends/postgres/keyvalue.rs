//! PostgreSQL's KeyValue adapter: every KeyValue capability on the connection and helpers of `mod.rs`.

use super::*;

#[async_trait]
impl KvBasic for PostgresStore {
    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Entry>> {
        let mut conn = self.db.conn().await?;
        let row = self
            .db
            .query(SELECT_ENTRY)
            .bind(ns)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await?;
        Ok(row.as_ref().map(entry))
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreResult<u64> {
        let mut conn = self.db.conn().await?;
        let version = upsert(&self.db, &mut conn, ns, key, &value, ttl).await?;
        conn.done().await?;
        Ok(version)
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let mut conn = self.db.conn().await?;
        let live: Option<bool> = self
            .db
            .scalar(
                "DELETE FROM prism_kv WHERE ns = $1 AND key = $2
             RETURNING (expires_at IS NULL OR expires_at > clock_timestamp())",
            )
            .bind(ns)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await?;
        Ok(live.unwrap_or(false))
    }

    async fn exists(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let mut conn = self.db.conn().await?;
        let found: Option<i32> = self
            .db
            .scalar(
                "SELECT 1 FROM prism_kv WHERE ns = $1 AND key = $2
             AND (expires_at IS NULL OR expires_at > clock_timestamp())",
            )
            .bind(ns)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl KvTtl for PostgresStore {
    async fn expire(&self, ns: &str, key: &str, ttl: Option<Duration>) -> StoreResult<bool> {
        let mut conn = self.db.conn().await?;
        let done = self.db.query(
            "UPDATE prism_kv SET expires_at = clock_timestamp() + $3::BIGINT * INTERVAL '1 millisecond'
             WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > clock_timestamp())",
        )
        .bind(ns)
        .bind(key)
        .bind(ttl_ms(ttl))
        .execute(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl KvScan for PostgresStore {
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
        keys_only: bool,
    ) -> StoreResult<Vec<ScanItem>> {
        // Range [start, end) on the "C"-collated key walks the primary-key index in byte order.
        let (start, exclusive) = crate::patterns::keyvalue::keys::scan_start(prefix, after);
        let mut conn = self.db.conn().await?;
        let rows = self
            .db
            .query(
                "SELECT key, CASE WHEN $6 THEN NULL ELSE value END AS value FROM prism_kv
             WHERE ns = $1 AND (key > $2 OR (key = $2 AND NOT $3))
               AND ($4::TEXT IS NULL OR key < $4) AND starts_with(key, $5)
               AND (expires_at IS NULL OR expires_at > clock_timestamp())
             ORDER BY key LIMIT $7",
            )
            .bind(ns)
            .bind(start)
            .bind(exclusive)
            .bind(prefix_end(prefix))
            .bind(prefix)
            .bind(keys_only)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch(&mut *conn)
            .map_ok(|r| ScanItem {
                key: r.get("key"),
                value: r.get::<Option<Vec<u8>>, _>("value").map(Bytes::from),
            });
        // Rows stream in, so a page of large values stops at the byte budget without loading more.
        let page = collect_page(rows, max_bytes).await.map_err(classify)?;
        conn.done().await?;
        Ok(page)
    }
}

#[async_trait]
impl KvBatch for PostgresStore {
    async fn batch_set(&self, ns: &str, items: Vec<BatchItem>) -> StoreResult<Vec<u64>> {
        let mut tx = self.db.begin().await?;
        let mut versions = Vec::with_capacity(items.len());
        for item in &items {
            versions.push(upsert(&self.db, &mut tx, ns, &item.key, &item.value, item.ttl).await?);
        }
        tx.commit().await.map_err(classify)?;
        Ok(versions)
    }

    async fn batch_get(
        &self,
        ns: &str,
        keys: &[String],
        max_bytes: usize,
    ) -> StoreResult<Vec<Option<Entry>>> {
        let mut conn = self.db.conn().await?;
        let mut rows = self.db.query(
            "SELECT key, value, version,
                CEIL(EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::BIGINT AS remaining_ms
             FROM prism_kv WHERE ns = $1 AND key = ANY($2)
             AND (expires_at IS NULL OR expires_at > clock_timestamp())",
        )
        .bind(ns)
        .bind(keys)
        .fetch(&mut *conn);
        // A key asked for several times is answered several times, and counts that often.
        let mut asked: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for k in keys {
            *asked.entry(k.as_str()).or_default() += 1;
        }
        let mut budget = ByteBudget::new(max_bytes);
        let mut found = std::collections::HashMap::new();
        while let Some(r) = rows.try_next().await.map_err(classify)? {
            let key: String = r.get("key");
            let e = entry(&r);
            let copies = asked.get(key.as_str()).copied().unwrap_or(1);
            if budget.spend(e.value.len() * copies) {
                return Err(StoreError::TooLarge { limit: max_bytes });
            }
            found.insert(key, e);
        }
        drop(rows);
        conn.done().await?;
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn batch_delete(&self, ns: &str, keys: &[String]) -> StoreResult<u32> {
        let mut conn = self.db.conn().await?;
        let live: i64 = self
            .db
            .scalar(
                "WITH gone AS (DELETE FROM prism_kv WHERE ns = $1 AND key = ANY($2)
                RETURNING (expires_at IS NULL OR expires_at > clock_timestamp()) AS live)
             SELECT COUNT(*) FILTER (WHERE live) FROM gone",
            )
            .bind(ns)
            .bind(keys)
            .fetch_one(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await?;
        Ok(u32::try_from(live).unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl KvCas for PostgresStore {
    async fn set_if(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> StoreResult<u64> {
        let mut conn = self.db.conn().await?;
        let version: Option<i64> = match condition {
            // Insert, or take over a row only if it has expired: one statement, atomic.
            Condition::IfAbsent => self.db.scalar(
                "INSERT INTO prism_kv (ns, key, value, version, expires_at)
                 VALUES ($1, $2, $3, nextval('prism_kv_version'),
                         clock_timestamp() + $4::BIGINT * INTERVAL '1 millisecond')
                 ON CONFLICT (ns, key) DO UPDATE
                 SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at
                 WHERE prism_kv.expires_at IS NOT NULL AND prism_kv.expires_at <= clock_timestamp()
                 RETURNING version",
            )
            .bind(ns)
            .bind(key)
            .bind(value.as_ref())
            .bind(ttl_ms(ttl))
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?,
            Condition::IfVersion(expected) => self.db.scalar(
                "UPDATE prism_kv SET value = $3, version = nextval('prism_kv_version'),
                    expires_at = clock_timestamp() + $4::BIGINT * INTERVAL '1 millisecond'
                 WHERE ns = $1 AND key = $2 AND version = $5
                   AND (expires_at IS NULL OR expires_at > clock_timestamp())
                 RETURNING version",
            )
            .bind(ns)
            .bind(key)
            .bind(value.as_ref())
            .bind(ttl_ms(ttl))
            .bind(i64::try_from(expected).unwrap_or(-1))
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?,
        };
        conn.done().await?;
        if let Some(v) = version {
            return Ok(u64::try_from(v).unwrap_or(0));
        }
        match condition {
            Condition::IfAbsent => Err(StoreError::AlreadyExists {
                key: key.to_string(),
            }),
            Condition::IfVersion(expected) => {
                // Only to name the current version in the error; the decision above was atomic.
                let current = self.get(ns, key).await?.map(|e| e.version);
                Err(StoreError::VersionMismatch {
                    key: key.to_string(),
                    expected,
                    current,
                })
            }
        }
    }
}

crate::kv_store_with_every_capability!(PostgresStore, durable = |_| true);
