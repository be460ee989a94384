//! In-memory implementations of the ports, in one place: for the services' unit tests and the api
//! benchmark. The contract suites ([`crate::ports::contract`]) hold each fake to what the DynamoDB
//! and S3 adapters do, so a fake cannot drift from the real thing.
//!
//! Always compiled rather than behind a cargo feature: a feature that only the tests enable would
//! make the tests, `cargo lambda watch` and the CLI build the shared crate differently.

mod decisions;
mod events;
mod jobs;
mod labels;
mod objects;
mod registry;
mod reviews;
mod rules;

pub use decisions::InMemoryDecisions;
pub use events::InMemoryBus;
pub use jobs::InMemoryJobs;
pub use labels::{InMemoryLabels, InlineReading};
pub use objects::InMemoryObjects;
pub use registry::InMemoryRegistry;

use crate::ports::{ModelBlobs, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

/// Runs a future of the fakes to completion: they never wait, so one poll does.
pub fn block_on<F: Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a fake waited; the fakes answer at once"),
    }
}

/// A panicking test thread must not hide a fake's state from the assertions after it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Hook = Box<dyn FnOnce() + Send>;

/// Model artifacts by object key. Counts fetches (a cache test reads them), and a hook can run
/// before the next fetch, e.g. to move the pointer while an activation is loading its artifact.
#[derive(Default)]
pub struct InMemoryBlobs {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    before_fetch: Mutex<Option<Hook>>,
    fetches: Mutex<usize>,
}

impl InMemoryBlobs {
    pub fn put(&self, object_key: &str, bytes: Vec<u8>) {
        lock(&self.objects).insert(object_key.to_owned(), bytes);
    }

    pub fn before_next_fetch(&self, hook: impl FnOnce() + Send + 'static) {
        *lock(&self.before_fetch) = Some(Box::new(hook));
    }

    pub fn fetches(&self) -> usize {
        *lock(&self.fetches)
    }
}

impl ModelBlobs for InMemoryBlobs {
    async fn fetch(&self, object_key: &str) -> Result<Vec<u8>, StoreError> {
        *lock(&self.fetches) += 1;
        let hook = lock(&self.before_fetch).take();
        if let Some(hook) = hook {
            hook();
        }
        lock(&self.objects)
            .get(object_key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(object_key.to_owned()))
    }
}
