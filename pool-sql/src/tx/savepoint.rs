//! [`Savepoint`]: a nested transaction in a [`Tx`].

use tokio_postgres::Row;

use super::Tx;
// The statement methods' docs link it.
#[cfg(doc)]
use crate::DbBuilder;
use crate::Error;
use crate::conn::{Done, Op, PgConn};
use crate::db::{Params, run_on, statement_api};
use crate::error::Kind;

/// A savepoint in a [`Tx`] ([`Tx::savepoint`]): a nested transaction. Its statements run in
/// the transaction; [`commit`](Savepoint::commit) keeps them (`RELEASE SAVEPOINT`),
/// [`rollback`](Savepoint::rollback) undoes them (`ROLLBACK TO SAVEPOINT`), and so does
/// dropping it (at the transaction's next statement, which cannot run before: the savepoint
/// borrows the transaction). Savepoints nest ([`savepoint`](Savepoint::savepoint)).
///
/// # Cancel safety
///
/// As [`Tx`]'s; a savepoint whose `commit` or `rollback` was dropped half way counts as
/// dropped open: the transaction rolls back to it (and fails if the release had landed).
#[derive(Debug)]
pub struct Savepoint<'t> {
    tx: &'t mut Tx,
    id: u64,
    /// Neither committed nor rolled back yet.
    open: bool,
}

impl<'t> Savepoint<'t> {
    pub(super) fn new(tx: &'t mut Tx, id: u64) -> Self {
        Savepoint { tx, id, open: true }
    }
}

impl Savepoint<'_> {
    statement_api!(mut);

    async fn run(&mut self, op: Op<'_>) -> Result<Done, Error> {
        self.tx.run(op).await
    }

    /// Releases the savepoint: what ran in it stays in the transaction.
    ///
    /// # Errors
    /// [`Error::is_tx_aborted`] when a statement in it failed (it is rolled back to the
    /// savepoint instead, and the transaction goes on); otherwise the error of `RELEASE`.
    ///
    /// # Cancel safety
    /// See [`Savepoint`].
    pub async fn commit(mut self) -> Result<(), Error> {
        self.tx.note_failure();
        if !self.tx.failed {
            let _ = self.tx.settle().await;
        }
        if self.tx.failed {
            self.rollback_inner().await?;
            return Err(Error::new(Kind::TxAborted { savepoint: true }));
        }
        let sql = format!("RELEASE SAVEPOINT pool_sql_sp_{}", self.id);
        self.tx.run(Op::Batch(&sql)).await?;
        self.open = false;
        Ok(())
    }

    /// Rolls back to the savepoint: what ran in it (nested savepoints included) is undone,
    /// what ran before stays, and a failed statement in it no longer fails the transaction.
    ///
    /// # Errors
    /// The error of `ROLLBACK TO SAVEPOINT`.
    ///
    /// # Cancel safety
    /// See [`Savepoint`].
    pub async fn rollback(mut self) -> Result<(), Error> {
        self.rollback_inner().await
    }

    async fn rollback_inner(&mut self) -> Result<(), Error> {
        let sql = format!(
            "ROLLBACK TO SAVEPOINT pool_sql_sp_{0}; RELEASE SAVEPOINT pool_sql_sp_{0}",
            self.id
        );
        let tx = &mut *self.tx;
        match run_on(&tx.db, &mut tx.guard, Op::Batch(&sql)).await {
            Ok(_) => {
                self.open = false;
                tx.rolled_back_to(self.id);
                // Nested ones dropped open are undone with it.
                if tx.pending.is_some_and(|p| p > self.id) {
                    tx.pending = None;
                }
                Ok(())
            }
            Err(e) => {
                tx.fail(&e);
                Err(e)
            }
        }
    }

    /// Sets a savepoint inside this one: see [`Tx::savepoint`].
    ///
    /// # Errors
    /// As [`Tx::savepoint`].
    ///
    /// # Cancel safety
    /// As [`Tx::savepoint`].
    pub async fn savepoint(&mut self) -> Result<Savepoint<'_>, Error> {
        self.tx.savepoint().await
    }

    /// Runs `f` in a savepoint inside this one: see [`Tx::transaction`].
    ///
    /// # Errors
    /// As [`Tx::transaction`].
    ///
    /// # Cancel safety
    /// As [`Tx::transaction`].
    pub async fn transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Savepoint<'_>) -> Result<T, E>,
        E: From<Error>,
    {
        self.tx.transaction(f).await
    }

    /// The session, for what this crate does not wrap ([`PgConn::client`]).
    pub fn get_ref(&self) -> &PgConn {
        &self.tx.guard
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            // The outermost savepoint dropped open wins: rolling back to it undoes the rest.
            let id = self.tx.pending.map_or(self.id, |p| p.min(self.id));
            self.tx.pending = Some(id);
        }
    }
}
