//! Model-based property test: random KeyValue operation sequences on each adapter (memstore, sqlite)
//! must agree with a plain ordered map per namespace — values, presence, scan order, CAS outcomes and
//! strictly increasing versions.

use bytes::Bytes;
use prism_runtime::backends::memstore::MemStore;
use prism_runtime::backends::sqlite::{SqliteConfig, SqliteStore};
use prism_runtime::patterns::keyvalue::store::{BatchItem, Condition, KvStore, StoreError};
use proptest::prelude::*;
use std::collections::BTreeMap;

const KEYS: [&str; 7] = ["a", "ab", "abc", "b", "ba", "c/", "é"];
const NAMESPACES: [&str; 2] = ["n1", "n2"];

#[derive(Clone, Debug)]
enum Action {
    Set(usize, usize, Vec<u8>),
    SetIfAbsent(usize, usize, Vec<u8>),
    SetIfVersion(usize, usize, Vec<u8>, bool),
    Get(usize, usize),
    Delete(usize, usize),
    Exists(usize, usize),
    Scan(usize, &'static str, usize),
    BatchSet(usize, Vec<(usize, Vec<u8>)>),
    BatchGet(usize, Vec<usize>),
    BatchDelete(usize, Vec<usize>),
}

fn action() -> impl Strategy<Value = Action> {
    let ns = 0..NAMESPACES.len();
    let key = 0..KEYS.len();
    let value = prop::collection::vec(any::<u8>(), 0..8);
    prop_oneof![
        (ns.clone(), key.clone(), value.clone()).prop_map(|(n, k, v)| Action::Set(n, k, v)),
        (ns.clone(), key.clone(), value.clone()).prop_map(|(n, k, v)| Action::SetIfAbsent(n, k, v)),
        (ns.clone(), key.clone(), value.clone(), any::<bool>())
            .prop_map(|(n, k, v, c)| Action::SetIfVersion(n, k, v, c)),
        (ns.clone(), key.clone()).prop_map(|(n, k)| Action::Get(n, k)),
        (ns.clone(), key.clone()).prop_map(|(n, k)| Action::Delete(n, k)),
        (ns.clone(), key.clone()).prop_map(|(n, k)| Action::Exists(n, k)),
        (
            ns.clone(),
            prop::sample::select(vec!["", "a", "ab", "b", "c", "é"]),
            1usize..5
        )
            .prop_map(|(n, p, l)| Action::Scan(n, p, l)),
        (
            ns.clone(),
            prop::collection::vec((key.clone(), value), 0..4)
        )
            .prop_map(|(n, e)| Action::BatchSet(n, e)),
        (ns.clone(), prop::collection::vec(key.clone(), 0..4))
            .prop_map(|(n, k)| Action::BatchGet(n, k)),
        (ns, prop::collection::vec(key, 0..4)).prop_map(|(n, k)| Action::BatchDelete(n, k)),
    ]
}

type Model = BTreeMap<(usize, &'static str), (Vec<u8>, u64)>;

async fn check(store: &dyn KvStore, actions: &[Action]) -> Result<(), TestCaseError> {
    let mut model: Model = BTreeMap::new();
    let mut last_version = BTreeMap::new();
    let mut record = |model: &mut Model,
                      n: usize,
                      k: &'static str,
                      v: Vec<u8>,
                      version: u64|
     -> Result<(), TestCaseError> {
        let prev = last_version.insert((n, k), version).unwrap_or(0);
        prop_assert!(version > prev, "version {version} not above {prev} for {k}");
        model.insert((n, k), (v, version));
        Ok(())
    };
    for a in actions {
        match a.clone() {
            Action::Set(n, k, v) => {
                let version = store
                    .set(NAMESPACES[n], KEYS[k], Bytes::from(v.clone()), None)
                    .await
                    .unwrap();
                record(&mut model, n, KEYS[k], v, version)?;
            }
            Action::SetIfAbsent(n, k, v) => {
                let result = store
                    .cas()
                    .unwrap()
                    .set_if(
                        NAMESPACES[n],
                        KEYS[k],
                        Bytes::from(v.clone()),
                        None,
                        Condition::IfAbsent,
                    )
                    .await;
                match (model.contains_key(&(n, KEYS[k])), result) {
                    (false, Ok(version)) => record(&mut model, n, KEYS[k], v, version)?,
                    (true, Err(StoreError::AlreadyExists { .. })) => {}
                    (present, other) => {
                        prop_assert!(false, "if_absent with present={present}: {other:?}")
                    }
                }
            }
            Action::SetIfVersion(n, k, v, use_current) => {
                let current = model.get(&(n, KEYS[k])).map(|(_, ver)| *ver);
                let expected = match (use_current, current) {
                    (true, Some(c)) => c,
                    (_, c) => c.unwrap_or(0) + 1_000_000,
                };
                let result = store
                    .cas()
                    .unwrap()
                    .set_if(
                        NAMESPACES[n],
                        KEYS[k],
                        Bytes::from(v.clone()),
                        None,
                        Condition::IfVersion(expected),
                    )
                    .await;
                match (current == Some(expected), result) {
                    (true, Ok(version)) => record(&mut model, n, KEYS[k], v, version)?,
                    (false, Err(StoreError::VersionMismatch { current: got, .. })) => {
                        prop_assert_eq!(got, current)
                    }
                    (matches, other) => {
                        prop_assert!(false, "if_version matches={matches}: {other:?}")
                    }
                }
            }
            Action::Get(n, k) => {
                let got = store.get(NAMESPACES[n], KEYS[k]).await.unwrap();
                let want = model.get(&(n, KEYS[k]));
                prop_assert_eq!(got.map(|e| (e.value.to_vec(), e.version)), want.cloned());
            }
            Action::Delete(n, k) => {
                let deleted = store.delete(NAMESPACES[n], KEYS[k]).await.unwrap();
                prop_assert_eq!(deleted, model.remove(&(n, KEYS[k])).is_some());
            }
            Action::Exists(n, k) => {
                let exists = store.exists(NAMESPACES[n], KEYS[k]).await.unwrap();
                prop_assert_eq!(exists, model.contains_key(&(n, KEYS[k])));
            }
            Action::Scan(n, prefix, limit) => {
                let mut after: Option<String> = None;
                let mut got = Vec::new();
                loop {
                    let page = store
                        .scan()
                        .unwrap()
                        .scan(
                            NAMESPACES[n],
                            prefix,
                            after.as_deref(),
                            limit,
                            usize::MAX,
                            false,
                        )
                        .await
                        .unwrap();
                    prop_assert!(page.len() <= limit);
                    let done = page.len() < limit;
                    after = page.last().map(|i| i.key.clone());
                    got.extend(page.into_iter().map(|i| (i.key, i.value.unwrap().to_vec())));
                    if done || after.is_none() {
                        break;
                    }
                }
                let mut want: Vec<(String, Vec<u8>)> = model
                    .iter()
                    .filter(|((mn, k), _)| *mn == n && k.starts_with(prefix))
                    .map(|((_, k), (v, _))| (k.to_string(), v.clone()))
                    .collect();
                want.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                prop_assert_eq!(got, want);
            }
            Action::BatchSet(n, entries) => {
                let items = entries
                    .iter()
                    .map(|(k, v)| BatchItem {
                        key: KEYS[*k].to_string(),
                        value: Bytes::from(v.clone()),
                        ttl: None,
                    })
                    .collect();
                let versions = store
                    .batch()
                    .unwrap()
                    .batch_set(NAMESPACES[n], items)
                    .await
                    .unwrap();
                prop_assert_eq!(versions.len(), entries.len());
                for ((k, v), version) in entries.into_iter().zip(versions) {
                    record(&mut model, n, KEYS[k], v, version)?;
                }
            }
            Action::BatchGet(n, keys) => {
                let names: Vec<String> = keys.iter().map(|k| KEYS[*k].to_string()).collect();
                let got = store
                    .batch()
                    .unwrap()
                    .batch_get(NAMESPACES[n], &names, usize::MAX)
                    .await
                    .unwrap();
                let want: Vec<_> = keys
                    .iter()
                    .map(|k| model.get(&(n, KEYS[*k])).cloned())
                    .collect();
                let got: Vec<_> = got
                    .into_iter()
                    .map(|e| e.map(|e| (e.value.to_vec(), e.version)))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Action::BatchDelete(n, keys) => {
                let names: Vec<String> = keys.iter().map(|k| KEYS[*k].to_string()).collect();
                let deleted = store
                    .batch()
                    .unwrap()
                    .batch_delete(NAMESPACES[n], &names)
                    .await
                    .unwrap();
                let want = keys
                    .iter()
                    .filter(|k| model.remove(&(n, KEYS[**k])).is_some())
                    .count();
                prop_assert_eq!(deleted as usize, want);
            }
        }
    }
    Ok(())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn memstore_agrees_with_the_model(actions in prop::collection::vec(action(), 1..40)) {
        block_on(async {
            let store = MemStore::new();
            check(&store, &actions).await
        })?;
    }

    #[test]
    fn sqlite_agrees_with_the_model(actions in prop::collection::vec(action(), 1..40)) {
        block_on(async {
            let store = SqliteStore::open(&SqliteConfig { path: ":memory:".into(), readers: 1, claim_idle_secs: None }).await.unwrap();
            let result = check(&store, &actions).await;
            store.close().await;
            result
        })?;
    }
}
