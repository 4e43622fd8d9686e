use sqlx::{Any, FromRow, Transaction};

use crate::{Db, DbError, DeviceRow};

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct GroupRow {
    /// The group's id.
    pub group_id: String,
    /// When it was created, Unix milliseconds.
    pub created_at: i64,
    /// Grows with every change of membership or role.
    pub version: i64,
}

/// One member of a group as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct MemberRow {
    /// The member's account.
    pub account_id: String,
    /// `admin` or `member`.
    pub role: String,
    /// When it joined, Unix milliseconds.
    pub added_at: i64,
}

/// What a membership change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// No such group, or the acting account is not in it.
    NoSuchGroup,
    /// The acting account is not an admin.
    NotAdmin,
    /// The group has its maximum of members.
    Full,
    /// The change would leave the group without an admin.
    LastAdmin,
    /// The account is not a member.
    NotMember,
    /// The member has that role already.
    Unchanged,
    /// Done; the group is at `version`.
    Changed {
        /// The group's version now.
        version: i64,
        /// The member's role before (`None`: it was not a member).
        was: Option<String>,
        /// A member made admin because the last admin left.
        promoted: Option<String>,
    },
}

const ADMIN: &str = "admin";

impl Db {
    /// Creates a group with `creator` as admin, `members` (distinct, not the creator) as
    /// members, and `invited` (distinct from those) invited.
    pub async fn create_group(
        &self,
        group_id: &str,
        creator: &str,
        members: &[String],
        invited: &[String],
        now_ms: i64,
    ) -> Result<(), DbError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO chat_groups (group_id, created_by, created_at, version) \
             VALUES ($1, $2, $3, 1)",
        )
        .bind(group_id)
        .bind(creator)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        insert_member(&mut tx, group_id, creator, ADMIN, now_ms).await?;
        for member in members {
            insert_member(&mut tx, group_id, member, "member", now_ms).await?;
        }
        for account in invited {
            insert_invitation(&mut tx, group_id, account, creator, now_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A group.
    pub async fn group(&self, group_id: &str) -> Result<Option<GroupRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT group_id, created_at, version FROM chat_groups WHERE group_id = $1",
        )
        .bind(group_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A group's members, oldest first.
    pub async fn group_members(&self, group_id: &str) -> Result<Vec<MemberRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT account_id, role, added_at FROM group_members WHERE group_id = $1 \
             ORDER BY added_at, account_id",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The groups an account is in, by id.
    pub async fn groups_of(&self, account_id: &str) -> Result<Vec<String>, DbError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT group_id FROM group_members WHERE account_id = $1 ORDER BY group_id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(g,)| g).collect())
    }

    /// An account's role in a group; `None` when it is not a member.
    pub async fn member_role(
        &self,
        group_id: &str,
        account_id: &str,
    ) -> Result<Option<String>, DbError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT role FROM group_members WHERE group_id = $1 AND account_id = $2",
        )
        .bind(group_id)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(r,)| r))
    }

    /// The active devices of a group's members, by account and number.
    pub async fn group_devices(&self, group_id: &str) -> Result<Vec<DeviceRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT d.account_id, d.device_id, d.name, d.identity_key, d.created_at \
             FROM group_members m JOIN devices d ON d.account_id = m.account_id \
             WHERE m.group_id = $1 AND d.removed_at IS NULL \
             ORDER BY d.account_id, d.device_id",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// As admin `actor`, adds `account` to a group with `role` (unless it has
    /// `max_members`), or sets the role of a member.
    pub async fn set_group_member(
        &self,
        group_id: &str,
        actor: &str,
        account: &str,
        role: &str,
        now_ms: i64,
        max_members: i64,
    ) -> Result<MemberChange, DbError> {
        let mut tx = self.begin().await?;
        let version = match authorize(&mut tx, group_id, actor, None).await? {
            Ok(version) => version,
            Err(refusal) => return Ok(refusal),
        };
        let was = role_in(&mut tx, group_id, account).await?;
        match was.as_deref() {
            Some(current) if current == role => return Ok(MemberChange::Unchanged),
            Some(ADMIN) if admins(&mut tx, group_id).await? <= 1 => {
                return Ok(MemberChange::LastAdmin);
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE group_members SET role = $3 WHERE group_id = $1 AND account_id = $2",
                )
                .bind(group_id)
                .bind(account)
                .bind(role)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                if members(&mut tx, group_id).await? >= max_members {
                    return Ok(MemberChange::Full);
                }
                // An invitation it had is used up.
                take_invitation(&mut *tx, group_id, account).await?;
                insert_member(&mut tx, group_id, account, role, now_ms).await?;
            }
        }
        tx.commit().await?;
        Ok(MemberChange::Changed {
            version,
            was,
            promoted: None,
        })
    }

    /// As admin `actor`, invites `account` (not a member) to a group: the group moves to its
    /// next version. `Unchanged` when it is invited already; `Full` when members and
    /// invitations would pass `max_members`.
    pub async fn invite_to_group(
        &self,
        group_id: &str,
        actor: &str,
        account: &str,
        now_ms: i64,
        max_members: i64,
    ) -> Result<MemberChange, DbError> {
        let mut tx = self.begin().await?;
        let version = match authorize(&mut tx, group_id, actor, None).await? {
            Ok(version) => version,
            Err(refusal) => return Ok(refusal),
        };
        if role_in(&mut tx, group_id, account).await?.is_some() {
            return Ok(MemberChange::Unchanged);
        }
        let (count,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM group_members WHERE group_id = $1) \
             + (SELECT COUNT(*) FROM group_invitations WHERE group_id = $1)",
        )
        .bind(group_id)
        .fetch_one(&mut *tx)
        .await?;
        if count >= max_members {
            return Ok(MemberChange::Full);
        }
        if !insert_invitation(&mut tx, group_id, account, actor, now_ms).await? {
            return Ok(MemberChange::Unchanged);
        }
        tx.commit().await?;
        Ok(MemberChange::Changed {
            version,
            was: None,
            promoted: None,
        })
    }

    /// `account` takes up its invitation and joins as a member; `NoSuchGroup` without one.
    pub async fn join_group(
        &self,
        group_id: &str,
        account: &str,
        now_ms: i64,
        max_members: i64,
    ) -> Result<MemberChange, DbError> {
        let mut tx = self.begin().await?;
        let Some(version) = bump(&mut tx, group_id).await? else {
            return Ok(MemberChange::NoSuchGroup);
        };
        if !take_invitation(&mut *tx, group_id, account).await? {
            return Ok(MemberChange::NoSuchGroup);
        }
        if members(&mut tx, group_id).await? >= max_members {
            return Ok(MemberChange::Full);
        }
        insert_member(&mut tx, group_id, account, "member", now_ms).await?;
        tx.commit().await?;
        Ok(MemberChange::Changed {
            version,
            was: None,
            promoted: None,
        })
    }

    /// Drops `account`'s invitation to a group; false if there was none.
    pub async fn drop_invitation(&self, group_id: &str, account: &str) -> Result<bool, DbError> {
        take_invitation(&self.writer, group_id, account).await
    }

    /// The accounts invited to a group, oldest invitation first.
    pub async fn group_invitations(&self, group_id: &str) -> Result<Vec<String>, DbError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT account_id FROM group_invitations WHERE group_id = $1 \
             ORDER BY invited_at, account_id",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(a,)| a).collect())
    }

    /// Who may add `account` to groups: `anyone`, `contacts` or `nobody`.
    pub async fn group_adds(&self, account: &str) -> Result<Option<String>, DbError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT group_adds FROM accounts WHERE id = $1")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Sets who may add `account` to groups.
    pub async fn set_group_adds(&self, account: &str, value: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE accounts SET group_adds = $2 WHERE id = $1")
            .bind(account)
            .bind(value)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Records that `account` wrote to `contact` directly.
    pub async fn add_contact(&self, account: &str, contact: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO contacts (account_id, contact_id) VALUES ($1, $2) \
             ON CONFLICT (account_id, contact_id) DO NOTHING",
        )
        .bind(account)
        .bind(contact)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Whether `account` has written to `contact` directly.
    pub async fn is_contact(&self, account: &str, contact: &str) -> Result<bool, DbError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM contacts WHERE account_id = $1 AND contact_id = $2")
                .bind(account)
                .bind(contact)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// As `actor` (an admin, or `account` itself leaving), removes `account` from a group.
    /// When the last admin goes, the longest-standing member becomes admin; when the last
    /// member goes, the group goes.
    pub async fn remove_group_member(
        &self,
        group_id: &str,
        actor: &str,
        account: &str,
    ) -> Result<MemberChange, DbError> {
        let mut tx = self.begin().await?;
        let version = match authorize(&mut tx, group_id, actor, Some(account)).await? {
            Ok(version) => version,
            Err(refusal) => return Ok(refusal),
        };
        let Some(was) = role_in(&mut tx, group_id, account).await? else {
            return Ok(MemberChange::NotMember);
        };
        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND account_id = $2")
            .bind(group_id)
            .bind(account)
            .execute(&mut *tx)
            .await?;
        let mut promoted = None;
        if members(&mut tx, group_id).await? == 0 {
            sqlx::query("DELETE FROM chat_groups WHERE group_id = $1")
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
        } else if admins(&mut tx, group_id).await? == 0 {
            let (next,): (String,) = sqlx::query_as(
                "SELECT account_id FROM group_members WHERE group_id = $1 \
                 ORDER BY added_at, account_id LIMIT 1",
            )
            .bind(group_id)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE group_members SET role = 'admin' WHERE group_id = $1 AND account_id = $2",
            )
            .bind(group_id)
            .bind(&next)
            .execute(&mut *tx)
            .await?;
            promoted = Some(next);
        }
        tx.commit().await?;
        Ok(MemberChange::Changed {
            version,
            was: Some(was),
            promoted,
        })
    }
}

/// Moves a group to its next version (which also locks its row); `None` when there is no
/// such group.
async fn bump(tx: &mut Transaction<'_, Any>, group_id: &str) -> Result<Option<i64>, DbError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE chat_groups SET version = version + 1 WHERE group_id = $1 RETURNING version",
    )
    .bind(group_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(v,)| v))
}

/// Moves the group to its next version if `actor` is an admin of it (or a member acting on
/// itself, `own` naming it); returns the version, or the refusal.
async fn authorize(
    tx: &mut Transaction<'_, Any>,
    group_id: &str,
    actor: &str,
    own: Option<&str>,
) -> Result<Result<i64, MemberChange>, DbError> {
    let Some(version) = bump(tx, group_id).await? else {
        return Ok(Err(MemberChange::NoSuchGroup));
    };
    Ok(match role_in(tx, group_id, actor).await?.as_deref() {
        None => Err(MemberChange::NoSuchGroup),
        Some(ADMIN) => Ok(version),
        Some(_) if own == Some(actor) => Ok(version),
        Some(_) => Err(MemberChange::NotAdmin),
    })
}

async fn role_in(
    tx: &mut Transaction<'_, Any>,
    group_id: &str,
    account: &str,
) -> Result<Option<String>, DbError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT role FROM group_members WHERE group_id = $1 AND account_id = $2")
            .bind(group_id)
            .bind(account)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|(r,)| r))
}

async fn members(tx: &mut Transaction<'_, Any>, group_id: &str) -> Result<i64, DbError> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
        .bind(group_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(count)
}

/// Invites `account` to a group as `by`; false if it was invited already.
async fn insert_invitation(
    tx: &mut Transaction<'_, Any>,
    group_id: &str,
    account: &str,
    by: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO group_invitations (group_id, account_id, invited_by, invited_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, account_id) DO NOTHING",
    )
    .bind(group_id)
    .bind(account)
    .bind(by)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn admins(tx: &mut Transaction<'_, Any>, group_id: &str) -> Result<i64, DbError> {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND role = 'admin'")
            .bind(group_id)
            .fetch_one(&mut **tx)
            .await?;
    Ok(count)
}

/// Deletes `account`'s invitation to a group; false if there was none.
async fn take_invitation<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    group_id: &str,
    account: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM group_invitations WHERE group_id = $1 AND account_id = $2")
        .bind(group_id)
        .bind(account)
        .execute(executor)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Adds a member.
async fn insert_member(
    tx: &mut Transaction<'_, Any>,
    group_id: &str,
    account: &str,
    role: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO group_members (group_id, account_id, role, added_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(group_id)
    .bind(account)
    .bind(role)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
