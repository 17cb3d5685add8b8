//! The pool as operations see it: each runs within a deadline, and a connection whose
//! operation was abandoned is closed, never reused.

use super::*;

/// The pool as one operation sees it: a connection taken from it goes back when the
/// operation is done with it, unless the operation was abandoned at its deadline. A
/// connection abandoned mid-operation is in a state no one knows (a transaction open on a
/// server that may still hold its locks, an answer that may never come over a network that
/// went silent): it is closed, never handed to the next operation.
#[derive(Clone)]
pub(super) struct Pool {
    inner: deadpool_postgres::Pool,
    abandoned: Arc<AtomicBool>,
}

impl Pool {
    pub(super) async fn get(&self) -> Result<Connection, deadpool_postgres::PoolError> {
        Ok(Connection {
            object: Some(self.inner.get().await?),
            abandoned: Arc::clone(&self.abandoned),
        })
    }
}

/// A connection of the pool, for one operation (see [`Pool`]).
pub(super) struct Connection {
    object: Option<deadpool_postgres::Object>,
    abandoned: Arc<AtomicBool>,
}

impl Deref for Connection {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        self.object.as_ref().expect("a connection until dropped")
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.object.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.abandoned.load(Ordering::Acquire)
            && let Some(object) = self.object.take()
        {
            // Out of the pool; dropping the client closes the connection.
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// Runs `work` on a [`Pool`] over `pool` for at most `timeout`; past it the work is
/// abandoned (its connection closed) and the answer is [`StoreErrorKind::Unavailable`].
/// `work` is called here, at once; the future returned runs it.
pub(super) fn within<T, F, Fut>(
    timeout: Duration,
    pool: &deadpool_postgres::Pool,
    work: F,
) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(Pool) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let abandoned = Arc::new(AtomicBool::new(false));
    let mut fut = Box::pin(work(Pool {
        inner: pool.clone(),
        abandoned: Arc::clone(&abandoned),
    }));
    async move {
        tokio::select! {
            result = &mut fut => result,
            () = tokio::time::sleep(timeout) => {
                abandoned.store(true, Ordering::Release);
                drop(fut);
                Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("PostgreSQL did not answer within {} ms", timeout.as_millis()),
                ))
            }
        }
    }
}
