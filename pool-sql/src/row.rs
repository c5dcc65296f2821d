//! Typed rows: [`FromRow`], and `query_as`, `query_one_as`, `query_opt_as` on [`Db`],
//! [`Conn`] and [`Tx`].
//!
//! A row becomes a `T: FromRow` column by column; a column that does not convert names
//! itself in the error ([`Error::column`]). Tuples of up to 8 [`FromSql`] types read the
//! row's first columns in order; a struct implements [`FromRow`] by hand with [`get`].

use tokio_postgres::Row;
use tokio_postgres::row::RowIndex;
use tokio_postgres::types::FromSql;

use crate::Tx;
use crate::db::{Conn, Db};
use crate::error::Kind;
use crate::{Error, ToStatement};

/// A value made from one row of a query's result, for [`Db::query_as`] and its kin.
///
/// Implemented for tuples of up to 8 [`FromSql`] types (`(i32,)`, `(String, Option<i64>)`,
/// ...), which read the first columns in order. No derive macro: implement it by hand with
/// [`get`], which reads one column by name or index and names the column in its error.
///
/// # Errors
///
/// `from_row` fails when a column is missing or does not convert (a wrong type, a NULL into
/// a type that is not an `Option`); the error's [`column`](Error::column) names it.
///
/// # Examples
///
/// ```
/// use pool_sql::{Error, FromRow, Row};
///
/// struct User {
///     id: i64,
///     name: String,
///     email: Option<String>,
/// }
///
/// impl FromRow for User {
///     fn from_row(row: &Row) -> Result<Self, Error> {
///         Ok(User {
///             id: pool_sql::get(row, "id")?,
///             name: pool_sql::get(row, "name")?,
///             email: pool_sql::get(row, "email")?,
///         })
///     }
/// }
/// ```
pub trait FromRow: Sized {
    /// Reads one row.
    ///
    /// # Errors
    /// A column that is missing or does not convert ([`Error::column`] names it).
    fn from_row(row: &Row) -> Result<Self, Error>;
}

/// Reads one column of `row` (by name, `"id"`, or index, `0`) as `T`: tokio-postgres's
/// [`Row::try_get`], with an error of this crate that names the column.
///
/// # Errors
/// No such column, or its type or value does not convert to `T`; [`Error::column`] names
/// the column (when the row has it) and the cause says why.
///
/// # Examples
///
/// ```
/// fn id(row: &pool_sql::Row) -> Result<i64, pool_sql::Error> {
///     pool_sql::get(row, "id")
/// }
/// ```
pub fn get<'a, I, T>(row: &'a Row, idx: I) -> Result<T, Error>
where
    I: RowIndex + std::fmt::Display,
    T: FromSql<'a>,
{
    row.try_get(&idx).map_err(|source| {
        let name = idx
            .__idx(row.columns())
            .map(|i| row.columns()[i].name().to_owned());
        Error::new(Kind::Column { name, source })
    })
}

/// `FromRow` for tuples: each element reads the column at its position.
macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t),+> FromRow for ($($t,)+)
        where
            $($t: for<'a> FromSql<'a>),+
        {
            fn from_row(row: &Row) -> Result<Self, Error> {
                Ok(($(get::<usize, $t>(row, $i)?,)+))
            }
        }
    };
}

tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// `query_as`, `query_one_as`, `query_opt_as`, each written once for [`Db`], [`Conn`] and
/// [`Tx`] over their `query`, `query_one` and `query_opt`.
macro_rules! typed_api {
    ($($mut:ident)?) => {
        /// Runs a query and reads each row as a `T` ([`FromRow`]: a tuple of column
        /// types, or your own type).
        ///
        /// # Errors
        /// As [`query`](Self::query); and a row that does not convert as `T`, the column
        /// named ([`Error::column`]).
        ///
        /// # Examples
        ///
        /// ```no_run
        /// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
        /// let pairs: Vec<(String, i32)> = db.query_as("SELECT k, v FROM kv", &[]).await?;
        /// # Ok(()) }
        /// ```
        pub async fn query_as<T: FromRow>(
            &$($mut)? self,
            sql: &(impl ToStatement + ?Sized),
            params: crate::Params<'_>,
        ) -> Result<Vec<T>, Error> {
            self.query(sql, params).await?.iter().map(T::from_row).collect()
        }

        /// Runs a query that returns exactly one row, read as a `T`.
        ///
        /// # Errors
        /// As [`query_one`](Self::query_one) and [`query_as`](Self::query_as).
        pub async fn query_one_as<T: FromRow>(
            &$($mut)? self,
            sql: &(impl ToStatement + ?Sized),
            params: crate::Params<'_>,
        ) -> Result<T, Error> {
            T::from_row(&self.query_one(sql, params).await?)
        }

        /// Runs a query that returns at most one row, read as a `T`.
        ///
        /// # Errors
        /// As [`query_opt`](Self::query_opt) and [`query_as`](Self::query_as).
        pub async fn query_opt_as<T: FromRow>(
            &$($mut)? self,
            sql: &(impl ToStatement + ?Sized),
            params: crate::Params<'_>,
        ) -> Result<Option<T>, Error> {
            self.query_opt(sql, params).await?.as_ref().map(T::from_row).transpose()
        }
    };
}

impl Db {
    typed_api!();
}

impl Conn {
    typed_api!(mut);
}

impl Tx {
    typed_api!(mut);
}
