//! The forum's database, MySQL/MariaDB or PostgreSQL, behind the few
//! operations the store needs. Every statement is written once, in a
//! portable form that [`expand`] turns into the server's dialect:
//!
//! - `?` placeholders (PostgreSQL numbers them: `$1`, `$2`, …);
//! - `{int}`, the type of `CAST(x AS {int})` that gives a 64-bit integer
//!   (`SIGNED` / `BIGINT`): the store reads every number as one;
//! - `{exact}` before an operand of `=`, so that text compares byte for
//!   byte (MySQL's `BINARY `; PostgreSQL's `=` is exact already);
//! - `{crc}(expr)`, a non-negative 32-bit checksum of `expr` (MySQL's
//!   `CRC32`; PostgreSQL has none, so the first 32 bits of its `md5`);
//! - `{schema}`, where the forum's tables are (`DATABASE()` /
//!   `current_schema()`);
//! - `{sep}`, the character 0x1F, which separates values in a row's
//!   checksum (`CHAR(31)` / `CHR(31)`: neither server has the other's).
//!
//! Values come back as a [`Row`] of integers, text and NULLs, whichever the
//! server: SQL casts what it selects to these.

use std::{fmt::Write, str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    AssertSqlSafe, Encode, Executor, MySqlPool, PgPool, Row as _, Type, ValueRef,
    mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlRow},
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
    query::Query,
};

/// How to reach the forum's database (holds the password: never printed).
#[derive(Clone)]
pub enum Options {
    Mysql(MySqlConnectOptions),
    Postgres(PgConnectOptions),
}

impl Options {
    /// The database's name, if the options name one.
    pub fn database(&self) -> Option<&str> {
        match self {
            Options::Mysql(options) => options.get_database(),
            Options::Postgres(options) => options.get_database(),
        }
    }

    /// The same, connecting to `database`.
    pub fn with_database(self, database: &str) -> Self {
        match self {
            Options::Mysql(options) => Options::Mysql(options.database(database)),
            Options::Postgres(options) => Options::Postgres(options.database(database)),
        }
    }
}

/// The SQL a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Mysql,
    Postgres,
}

/// A forum's database: a pool of connections to either server.
pub enum Database {
    Mysql(MySqlPool),
    Postgres(PgPool),
}

/// A value bound to a `?`.
#[derive(Clone, Debug)]
pub enum Bind {
    Int(i64),
    Text(String),
}

impl From<i64> for Bind {
    fn from(value: i64) -> Self {
        Bind::Int(value)
    }
}

impl From<u32> for Bind {
    fn from(value: u32) -> Self {
        Bind::Int(value.into())
    }
}

impl From<&str> for Bind {
    fn from(value: &str) -> Self {
        Bind::Text(value.to_owned())
    }
}

impl From<&String> for Bind {
    fn from(value: &String) -> Self {
        Bind::Text(value.clone())
    }
}

impl From<String> for Bind {
    fn from(value: String) -> Self {
        Bind::Text(value)
    }
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// A selected row: its values by column name.
#[derive(Debug)]
pub struct Row {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    fn value(&self, name: &str) -> Result<&Value, sqlx::Error> {
        self.names
            .iter()
            .position(|column| column == name)
            .map(|index| &self.values[index])
            .ok_or_else(|| sqlx::Error::ColumnNotFound(name.to_owned()))
    }

    /// The integer in column `name`, or None if it is NULL.
    pub fn int_or_null(&self, name: &str) -> Result<Option<i64>, sqlx::Error> {
        match self.value(name)? {
            Value::Null => Ok(None),
            Value::Int(value) => Ok(Some(*value)),
            Value::Text(_) => Err(decode(name, "is text, not an integer")),
        }
    }

    /// The integer in column `name`.
    pub fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        self.int_or_null(name)?
            .ok_or_else(|| decode(name, "is NULL, not an integer"))
    }

    /// The text in column `name`.
    pub fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        match self.value(name)? {
            Value::Text(text) => Ok(text.clone()),
            Value::Null => Err(decode(name, "is NULL, not text")),
            Value::Int(_) => Err(decode(name, "is an integer, not text")),
        }
    }
}

fn decode(column: &str, why: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: why.into(),
    }
}

/// A result's rows as [`Row`]s, each value decoded by `value`; the
/// columns' names are shared by every row.
fn decode_all<R: sqlx::Row>(
    rows: &[R],
    value: fn(&R, usize) -> Result<Value, sqlx::Error>,
) -> Result<Vec<Row>, sqlx::Error> {
    let names: Arc<[String]> = rows.first().map_or_else(
        || Arc::from([]),
        |row| {
            row.columns()
                .iter()
                .map(|column| sqlx::Column::name(column).to_owned())
                .collect()
        },
    );
    rows.iter()
        .map(|row| {
            Ok(Row {
                names: names.clone(),
                values: (0..row.len())
                    .map(|index| value(row, index))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

fn mysql_value(row: &MySqlRow, index: usize) -> Result<Value, sqlx::Error> {
    if row.try_get_raw(index)?.is_null() {
        return Ok(Value::Null);
    }
    if let Ok(int) = row.try_get::<i64, _>(index) {
        return Ok(Value::Int(int));
    }
    if let Ok(text) = row.try_get::<String, _>(index) {
        return Ok(Value::Text(text));
    }
    // MySQL calls the result of some string functions binary.
    let bytes: Vec<u8> = row.try_get(index)?;
    String::from_utf8(bytes)
        .map(Value::Text)
        .map_err(|err| decode(&index.to_string(), &err.to_string()))
}

fn pg_value(row: &PgRow, index: usize) -> Result<Value, sqlx::Error> {
    if row.try_get_raw(index)?.is_null() {
        return Ok(Value::Null);
    }
    if let Ok(int) = row.try_get::<i64, _>(index) {
        return Ok(Value::Int(int));
    }
    if let Ok(int) = row.try_get::<i32, _>(index) {
        return Ok(Value::Int(int.into()));
    }
    if let Ok(int) = row.try_get::<i16, _>(index) {
        return Ok(Value::Int(int.into()));
    }
    // information_schema's columns are domains over text types, which
    // sqlx does not take for text; their values are the text's bytes.
    row.try_get::<String, _>(index)
        .or_else(|_| row.try_get_unchecked::<String, _>(index))
        .map(Value::Text)
}

/// `sql` with `binds` bound, as sqlx's query of server `DB`.
fn query<DB>(sql: String, binds: &[Bind]) -> Query<'static, DB, DB::Arguments>
where
    DB: sqlx::Database,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
{
    binds
        .iter()
        .fold(sqlx::query(AssertSqlSafe(sql)), |query, bind| match bind {
            Bind::Int(value) => query.bind(*value),
            Bind::Text(value) => query.bind(value.clone()),
        })
}

impl Database {
    /// A pool that connects when first used (a database that is down now
    /// is waited for), with at most `max` connections, each waited for at
    /// most `deadline`.
    pub fn lazy(options: &Options, max: u32, deadline: Duration) -> Self {
        match options {
            Options::Mysql(options) => {
                let strict = "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')";
                let pool = MySqlPoolOptions::new()
                    .max_connections(max)
                    .min_connections(0)
                    .acquire_timeout(deadline)
                    // A write the column cannot hold fails instead of
                    // being cut short, whatever the server's own mode
                    // (checked before writing too; this is the second
                    // line). PostgreSQL always refuses such a write.
                    .after_connect(move |connection, _| {
                        Box::pin(async move { connection.execute(strict).await.map(drop) })
                    })
                    .connect_lazy_with(options.clone().pipes_as_concat(false).timezone(None));
                Database::Mysql(pool)
            }
            Options::Postgres(options) => Database::Postgres(
                PgPoolOptions::new()
                    .max_connections(max)
                    .min_connections(0)
                    .acquire_timeout(deadline)
                    .connect_lazy_with(options.clone()),
            ),
        }
    }

    fn dialect(&self) -> Dialect {
        match self {
            Database::Mysql(_) => Dialect::Mysql,
            Database::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The rows portable statement `sql` selects.
    pub async fn rows(&self, sql: &str, binds: &[Bind]) -> Result<Vec<Row>, sqlx::Error> {
        let sql = expand(sql, self.dialect());
        match self {
            Database::Mysql(pool) => {
                decode_all(&query(sql, binds).fetch_all(pool).await?, mysql_value)
            }
            Database::Postgres(pool) => {
                decode_all(&query(sql, binds).fetch_all(pool).await?, pg_value)
            }
        }
    }

    /// Runs portable statement `sql`; returns the rows it affected.
    pub async fn run(&self, sql: &str, binds: &[Bind]) -> Result<u64, sqlx::Error> {
        let sql = expand(sql, self.dialect());
        Ok(match self {
            Database::Mysql(pool) => query(sql, binds).execute(pool).await?.rows_affected(),
            Database::Postgres(pool) => query(sql, binds).execute(pool).await?.rows_affected(),
        })
    }

    /// Runs portable `INSERT` statement `sql`; returns the value the
    /// server gave its serial column `id_column`.
    pub async fn insert(
        &self,
        sql: &str,
        binds: &[Bind],
        id_column: &str,
    ) -> Result<i64, sqlx::Error> {
        match self {
            Database::Mysql(pool) => {
                let done = query(expand(sql, Dialect::Mysql), binds)
                    .execute(pool)
                    .await?;
                Ok(done.last_insert_id() as i64)
            }
            Database::Postgres(pool) => {
                let sql = format!("{sql} RETURNING CAST({id_column} AS BIGINT)");
                let row = query(expand(&sql, Dialect::Postgres), binds)
                    .fetch_one(pool)
                    .await?;
                row.try_get(0)
            }
        }
    }

    /// Sets `column` of the row of `table` whose primary key `key_column`
    /// is `key`, inserting the row if there is none (MyBB's `datacache`
    /// has no other way to be written, and each server its own syntax).
    pub async fn upsert(
        &self,
        table: &str,
        key_column: &str,
        key: &str,
        column: &str,
        value: &str,
    ) -> Result<(), sqlx::Error> {
        let sql = match self {
            Database::Mysql(_) => {
                format!("REPLACE INTO {table} ({key_column}, {column}) VALUES (?, ?)")
            }
            Database::Postgres(_) => format!(
                "INSERT INTO {table} ({key_column}, {column}) VALUES (?, ?) \
                 ON CONFLICT ({key_column}) DO UPDATE SET {column} = EXCLUDED.{column}"
            ),
        };
        self.run(&sql, &[key.into(), value.into()]).await.map(drop)
    }

    /// The server's name and version, for the status.
    pub async fn version(&self) -> Result<String, sqlx::Error> {
        let sql = match self {
            Database::Mysql(_) => "SELECT VERSION() AS version",
            Database::Postgres(_) => {
                "SELECT 'PostgreSQL ' || current_setting('server_version') AS version"
            }
        };
        self.rows(sql, &[])
            .await?
            .first()
            .ok_or(sqlx::Error::RowNotFound)?
            .text("version")
    }
}

/// Portable statement `sql` in `dialect` (see the module). Text between
/// single quotes is left alone.
pub fn expand(sql: &str, dialect: Dialect) -> String {
    let mut placeholders = 0;
    expand_into(sql, dialect, &mut placeholders)
}

fn expand_into(sql: &str, dialect: Dialect, placeholders: &mut usize) -> String {
    let postgres = dialect == Dialect::Postgres;
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            let end = rest[1..].find('\'').map_or(rest.len(), |i| i + 2);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        if c == '?' {
            *placeholders += 1;
            if postgres {
                let _ = write!(out, "${placeholders}");
            } else {
                out.push('?');
            }
            rest = &rest[1..];
            continue;
        }
        if c == '{'
            && let Some(close) = rest.find('}')
        {
            let marker = &rest[1..close];
            rest = &rest[close + 1..];
            let expanded = match (marker, postgres) {
                ("int", false) => "SIGNED",
                ("int", true) => "BIGINT",
                ("exact", false) => "BINARY ",
                ("exact", true) => "",
                ("schema", false) => "DATABASE()",
                ("schema", true) => "current_schema()",
                ("sep", false) => "CHAR(31)",
                ("sep", true) => "CHR(31)",
                ("crc", false) => "CRC32",
                ("crc", true) => {
                    let end = closing_paren(rest)
                        .unwrap_or_else(|| panic!("{{crc}} without (…) in {sql:?}"));
                    let inner = expand_into(&rest[1..end], dialect, placeholders);
                    rest = &rest[end + 1..];
                    let _ = write!(out, "('x' || substr(md5({inner}), 1, 8))::bit(32)::bigint");
                    continue;
                }
                _ => panic!("unknown SQL marker {{{marker}}} in {sql:?}"),
            };
            out.push_str(expanded);
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The index of the `)` closing the `(` `sql` starts with.
fn closing_paren(sql: &str) -> Option<usize> {
    if !sql.starts_with('(') {
        return None;
    }
    let mut depth = 0;
    let mut quoted = false;
    for (index, c) in sql.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

impl FromStr for Dialect {
    type Err = String;

    /// The dialect of a database URL's scheme.
    fn from_str(url: &str) -> Result<Self, String> {
        match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("mysql" | "mariadb") => Ok(Dialect::Mysql),
            Some("postgres" | "postgresql") => Ok(Dialect::Postgres),
            _ => Err("not a mysql:// or postgres:// URL".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_quotes() {
        let sql = "SELECT '?' AS q FROM t WHERE a = ? AND b IN (-2, ?)";
        assert_eq!(expand(sql, Dialect::Mysql), sql);
        assert_eq!(
            expand(sql, Dialect::Postgres),
            "SELECT '?' AS q FROM t WHERE a = $1 AND b IN (-2, $2)"
        );
    }

    #[test]
    fn markers_become_each_servers_sql() {
        let sql = "SELECT CAST(a AS {int}) FROM t WHERE {exact}b = ? AND s = {schema}";
        assert_eq!(
            expand(sql, Dialect::Mysql),
            "SELECT CAST(a AS SIGNED) FROM t WHERE BINARY b = ? AND s = DATABASE()"
        );
        assert_eq!(
            expand(sql, Dialect::Postgres),
            "SELECT CAST(a AS BIGINT) FROM t WHERE b = $1 AND s = current_schema()"
        );
    }

    #[test]
    fn checksums_wrap_their_argument() {
        let sql = "SELECT SUM({crc}(CONCAT_WS({sep}, a, 'x)'))), ? FROM t";
        assert_eq!(
            expand(sql, Dialect::Mysql),
            "SELECT SUM(CRC32(CONCAT_WS(CHAR(31), a, 'x)'))), ? FROM t"
        );
        assert_eq!(
            expand(sql, Dialect::Postgres),
            "SELECT SUM(('x' || substr(md5(CONCAT_WS(CHR(31), a, 'x)')), 1, 8))::bit(32)::bigint), $1 FROM t"
        );
    }

    #[test]
    #[should_panic(expected = "unknown SQL marker {nope}")]
    fn an_unknown_marker_is_a_bug() {
        expand("SELECT {nope}", Dialect::Postgres);
    }

    #[test]
    fn urls_name_their_server() {
        assert_eq!("mysql://u@h/d".parse(), Ok(Dialect::Mysql));
        assert_eq!("postgresql://u@h/d".parse(), Ok(Dialect::Postgres));
        assert!("sqlite://x".parse::<Dialect>().is_err());
    }
}
