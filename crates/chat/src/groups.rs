//! Groups: creating one, adding and removing members (admins only), leaving, listing. Every
//! change is announced to the members (and to those it removed) as a `group` entry in their
//! inboxes, in order with the group's messages.

use sealpost_db::{MemberChange, MemberRow};
use sealpost_proto::{Group, GroupAdds, GroupChange, GroupMember, GroupRole, Privacy, Problem};

use crate::send::{GroupBody, valid_id};
use crate::{Chat, unix_millis};

/// Why a group request failed. Each variant has one status and one stable code.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No such group, or the account is not in it (the two look the same to outsiders).
    #[error("no such group, or this account is not in it")]
    NoSuchGroup,
    /// A member to add has no account.
    #[error("account {0:?} does not exist")]
    NoSuchAccount(String),
    /// The account to remove is not a member.
    #[error("account {0:?} is not a member of this group")]
    NotMember(String),
    /// Only admins may do this.
    #[error("only a group admin may add members, remove others or change roles")]
    NotAdmin,
    /// The group would have more members than allowed.
    #[error("a group has at most {0} members")]
    TooLarge(usize),
    /// The change would leave the group without an admin.
    #[error("the group would be left without an admin; make another member admin first")]
    LastAdmin,
    /// The request names an account twice, or the creator.
    #[error("{0}")]
    Invalid(String),
    /// Too many group changes by this account, or to this group; retry after this many seconds.
    #[error("too many group changes; retry in {0} s")]
    RateLimited(u64),
    /// The server failed.
    #[error("internal: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<sealpost_db::DbError> for GroupError {
    fn from(e: sealpost_db::DbError) -> Self {
        Self::Internal(e.into())
    }
}

impl GroupError {
    /// HTTP status and stable code.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            Self::NoSuchGroup => (404, "no-such-group"),
            Self::NoSuchAccount(_) => (404, "no-such-account"),
            Self::NotMember(_) => (404, "not-a-member"),
            Self::NotAdmin => (403, "not-group-admin"),
            Self::TooLarge(_) => (409, "group-too-large"),
            Self::LastAdmin => (409, "last-admin"),
            Self::Invalid(_) => (400, "invalid-group-request"),
            Self::RateLimited(_) => (429, "rate-limited"),
            Self::Internal(_) => (500, "internal"),
        }
    }

    /// The problem body; internal details are logged here and never sent.
    pub fn to_problem(&self) -> Problem {
        let (status, code) = self.status_code();
        if status >= 500 {
            tracing::error!(error = %self, "group request failed");
            return Problem::new(status, code, "internal error; see server logs");
        }
        Problem::new(status, code, self.to_string())
    }

    /// Seconds to wait before retrying, for `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

/// Members a group's creation may name for the price of one change.
const MEMBERS_PER_CHANGE: u64 = 16;

impl Chat {
    /// Creates a group of `device` of `account` (its admin) and `members`.
    pub async fn create_group(
        &self,
        account: &str,
        device: u32,
        members: Vec<String>,
    ) -> Result<Group, GroupError> {
        let mut seen = std::collections::BTreeSet::new();
        for member in &members {
            if member == account {
                return Err(GroupError::Invalid(
                    "the creator is a member already; list only the others".to_owned(),
                ));
            }
            if !seen.insert(member.as_str()) {
                return Err(GroupError::Invalid(format!("{member:?} is listed twice")));
            }
        }
        if members.len() + 1 > self.config.max_group_members {
            return Err(GroupError::TooLarge(self.config.max_group_members));
        }
        for member in &members {
            self.existing(member).await?;
        }
        // A creation naming many members writes a notice to each of their devices: it costs
        // one change more per `MEMBERS_PER_CHANGE` of them.
        let more = u64::try_from(members.len()).unwrap_or(u64::MAX) / MEMBERS_PER_CHANGE;
        self.take_group_changes(account, None, 1 + more)?;
        let (mut added, mut invited) = (Vec::new(), Vec::new());
        for member in members {
            if self.may_add(account, &member).await? {
                added.push(member);
            } else {
                invited.push(member);
            }
        }
        let group_id = uuid::Uuid::new_v4().simple().to_string();
        self.db
            .create_group(&group_id, account, &added, &invited, unix_millis())
            .await?;
        let body = change_body(GroupChange::Created, added, 1);
        self.announce(account, device, &group_id, &body, &[])
            .await?;
        if !invited.is_empty() {
            let body = change_body(GroupChange::Invited, invited.clone(), 1);
            self.announce(account, device, &group_id, &body, &invited)
                .await?;
        }
        self.group(account, &group_id).await
    }

    /// A group `account` is in.
    pub async fn group(&self, account: &str, group_id: &str) -> Result<Group, GroupError> {
        if !valid_id(group_id) {
            return Err(GroupError::NoSuchGroup);
        }
        let Some(row) = self.db.group(group_id).await? else {
            return Err(GroupError::NoSuchGroup);
        };
        let members = self.db.group_members(group_id).await?;
        if !members.iter().any(|m| m.account_id == account) {
            return Err(GroupError::NoSuchGroup);
        }
        Ok(Group {
            group_id: row.group_id,
            created_at: row.created_at,
            version: u64::try_from(row.version).unwrap_or(0),
            members: members.into_iter().map(member).collect(),
            invited: self.db.group_invitations(group_id).await?,
        })
    }

    /// The groups `account` is in.
    pub async fn groups(&self, account: &str) -> Result<Vec<Group>, GroupError> {
        let mut groups = Vec::new();
        for group_id in self.db.groups_of(account).await? {
            match self.group(account, &group_id).await {
                Ok(group) => groups.push(group),
                // It went (or the account left) since the listing.
                Err(GroupError::NoSuchGroup) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(groups)
    }

    /// As `device` of admin `account`, adds `member` with `role`, or sets its role.
    pub async fn set_member(
        &self,
        account: &str,
        device: u32,
        group_id: &str,
        member: &str,
        role: GroupRole,
    ) -> Result<Group, GroupError> {
        if !valid_id(group_id) {
            return Err(GroupError::NoSuchGroup);
        }
        let max = i64::try_from(self.config.max_group_members).unwrap_or(i64::MAX);
        if member == account && self.db.member_role(group_id, account).await?.is_none() {
            // Joining on an invitation (the group's budget is keyed only by its members).
            self.take_group_changes(account, None, 1)?;
            let change = self
                .db
                .join_group(group_id, account, unix_millis(), max)
                .await?;
            let MemberChange::Changed { version, .. } = change else {
                return Err(self.refusal(change, member));
            };
            let body = change_body(GroupChange::Added, vec![account.to_owned()], version);
            self.announce(account, device, group_id, &body, &[]).await?;
            return self.group(account, group_id).await;
        }
        self.existing(member).await?;
        let admin = self.member_of(account, group_id).await? == "admin";
        // Only changes the caller may make spend the group's budget.
        self.take_group_changes(account, admin.then_some(group_id), 1)?;
        if self.db.member_role(group_id, member).await?.is_none()
            && !self.may_add(account, member).await?
        {
            let change = self
                .db
                .invite_to_group(group_id, account, member, unix_millis(), max)
                .await?;
            match change {
                MemberChange::Changed { version, .. } => {
                    let invited = vec![member.to_owned()];
                    let body = change_body(GroupChange::Invited, invited.clone(), version);
                    self.announce(account, device, group_id, &body, &invited)
                        .await?;
                }
                MemberChange::Unchanged => {}
                other => return Err(self.refusal(other, member)),
            }
            return self.group(account, group_id).await;
        }
        let change = self
            .db
            .set_group_member(group_id, account, member, role.as_str(), unix_millis(), max)
            .await?;
        let (version, was) = match change {
            MemberChange::Changed { version, was, .. } => (version, was),
            MemberChange::Unchanged => return self.group(account, group_id).await,
            other => return Err(self.refusal(other, member)),
        };
        let what = match (was, role) {
            (None, _) => GroupChange::Added,
            (Some(_), GroupRole::Admin) => GroupChange::Promoted,
            (Some(_), GroupRole::Member) => GroupChange::Demoted,
        };
        let body = change_body(what, vec![member.to_owned()], version);
        self.announce(account, device, group_id, &body, &[]).await?;
        self.group(account, group_id).await
    }

    /// As `device` of `account` (an admin, or `member` itself leaving), removes `member`.
    pub async fn remove_member(
        &self,
        account: &str,
        device: u32,
        group_id: &str,
        member: &str,
    ) -> Result<(), GroupError> {
        if !valid_id(group_id) {
            return Err(GroupError::NoSuchGroup);
        }
        if self.db.member_role(group_id, member).await?.is_none() {
            // An invitation: declined by its account, or withdrawn by an admin.
            let admin = self.db.member_role(group_id, account).await?.as_deref() == Some("admin");
            if (member == account || admin) && self.db.drop_invitation(group_id, member).await? {
                return Ok(());
            }
        }
        let admin = self.member_of(account, group_id).await? == "admin";
        self.take_group_changes(account, (admin || member == account).then_some(group_id), 1)?;
        let change = self
            .db
            .remove_group_member(group_id, account, member)
            .await?;
        let MemberChange::Changed {
            version, promoted, ..
        } = change
        else {
            return Err(self.refusal(change, member));
        };
        let what = if member == account {
            GroupChange::Left
        } else {
            GroupChange::Removed
        };
        let body = change_body(what, vec![member.to_owned()], version);
        self.announce(account, device, group_id, &body, &[member.to_owned()])
            .await?;
        if let Some(promoted) = promoted {
            let body = change_body(GroupChange::Promoted, vec![promoted], version);
            self.announce(account, device, group_id, &body, &[]).await?;
        }
        Ok(())
    }

    /// Takes `changes` from `account`'s budget and, for an existing group, the group's (each
    /// change writes an inbox copy for every member device).
    fn take_group_changes(
        &self,
        account: &str,
        group_id: Option<&str>,
        changes: u64,
    ) -> Result<(), GroupError> {
        self.group_changes_by_account
            .take(account, changes)
            .map_err(GroupError::RateLimited)?;
        if let Some(group_id) = group_id {
            self.group_changes_by_group
                .take(group_id, changes)
                .map_err(GroupError::RateLimited)?;
        }
        Ok(())
    }

    /// Whether `adder` may add `account` to a group directly; else it is invited.
    async fn may_add(&self, adder: &str, account: &str) -> Result<bool, GroupError> {
        let setting = self.db.group_adds(account).await?.unwrap_or_default();
        Ok(match GroupAdds::parse(&setting) {
            GroupAdds::Anyone => true,
            GroupAdds::Contacts => self.db.is_contact(account, adder).await?,
            GroupAdds::Nobody => false,
        })
    }

    /// An account's privacy settings.
    pub async fn privacy(&self, account: &str) -> Result<Privacy, GroupError> {
        let setting = self.db.group_adds(account).await?.unwrap_or_default();
        Ok(Privacy {
            group_adds: GroupAdds::parse(&setting),
        })
    }

    /// Sets an account's privacy settings.
    pub async fn set_privacy(
        &self,
        account: &str,
        privacy: Privacy,
    ) -> Result<Privacy, GroupError> {
        self.db
            .set_group_adds(account, privacy.group_adds.as_str())
            .await?;
        Ok(privacy)
    }

    /// `account`'s role in a group; refuses a group it is not in, before its id keys a budget.
    async fn member_of(&self, account: &str, group_id: &str) -> Result<String, GroupError> {
        self.db
            .member_role(group_id, account)
            .await?
            .ok_or(GroupError::NoSuchGroup)
    }

    async fn existing(&self, account: &str) -> Result<(), GroupError> {
        if !valid_id(account) || self.db.devices(account).await?.is_empty() {
            return Err(GroupError::NoSuchAccount(account.to_owned()));
        }
        Ok(())
    }

    fn refusal(&self, change: MemberChange, member: &str) -> GroupError {
        match change {
            MemberChange::NotAdmin => GroupError::NotAdmin,
            MemberChange::Full => GroupError::TooLarge(self.config.max_group_members),
            MemberChange::LastAdmin => GroupError::LastAdmin,
            MemberChange::NotMember => GroupError::NotMember(member.to_owned()),
            MemberChange::NoSuchGroup | MemberChange::Unchanged | MemberChange::Changed { .. } => {
                GroupError::NoSuchGroup
            }
        }
    }
}

/// What a stored group change says.
fn change_body(change: GroupChange, members: Vec<String>, version: i64) -> GroupBody {
    GroupBody {
        change,
        members,
        version: u64::try_from(version).unwrap_or(0),
    }
}

fn member(row: MemberRow) -> GroupMember {
    GroupMember {
        account_id: row.account_id,
        role: GroupRole::parse(&row.role),
        added_at: row.added_at,
    }
}
