/// Errors from the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The configuration (URL, options) is unusable.
    #[error("{0}")]
    Config(String),
    /// A unique constraint rejected the write (e.g. a phone number already registered).
    #[error("unique constraint violated")]
    Conflict,
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else the driver reported.
    #[error("database error: {0}")]
    Sqlx(sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Self::Conflict,
            _ => Self::Sqlx(e),
        }
    }
}
