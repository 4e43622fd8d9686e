use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A member's powers in a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupRole {
    /// Adds and removes members and sets their roles.
    Admin,
    /// Sends and receives.
    #[default]
    Member,
}

impl GroupRole {
    /// The role's name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// The role a stored name stands for (anything else is a member).
    pub fn parse(name: &str) -> Self {
        if name == "admin" {
            Self::Admin
        } else {
            Self::Member
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupMember {
    /// The member's account.
    pub account_id: String,
    /// Admin or member.
    pub role: GroupRole,
    /// When the account joined, Unix milliseconds.
    pub added_at: i64,
}

/// A group as its members see it. Its name, picture and description are the members'
/// business: they travel end-to-end encrypted in messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    /// The group's id.
    pub group_id: String,
    /// When it was created, Unix milliseconds.
    pub created_at: i64,
    /// Grows with every change of membership or role.
    pub version: u64,
    /// Its members, oldest first.
    pub members: Vec<GroupMember>,
    /// Accounts invited and not joined yet (their `group_adds` setting did not let an admin
    /// add them), oldest invitation first.
    #[serde(default)]
    pub invited: Vec<String>,
}

/// Who may add an account to a group; others invite it instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupAdds {
    /// Any account.
    #[default]
    Anyone,
    /// Accounts this account has sent a direct message to.
    Contacts,
    /// Nobody: every group invites.
    Nobody,
}

impl GroupAdds {
    /// The setting's name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anyone => "anyone",
            Self::Contacts => "contacts",
            Self::Nobody => "nobody",
        }
    }

    /// The setting a stored name stands for (anything else is `anyone`, the default).
    pub fn parse(name: &str) -> Self {
        match name {
            "contacts" => Self::Contacts,
            "nobody" => Self::Nobody,
            _ => Self::Anyone,
        }
    }
}

/// An account's privacy settings (`GET` and `PUT /v1/groups/privacy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// Who may add this account to groups.
    pub group_adds: GroupAdds,
}

/// `POST /v1/groups`: a new group with its creator as admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// The other members' accounts (the creator is added as admin).
    pub members: Vec<String>,
}

/// `PUT /v1/groups/{group_id}/members/{account_id}`: adds a member, or sets its role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGroupMember {
    /// The member's role; `member` when left out.
    #[serde(default)]
    pub role: GroupRole,
}

/// What changed in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupChange {
    /// The group was created with `members`.
    Created,
    /// `members` were added.
    Added,
    /// `members` were removed by an admin.
    Removed,
    /// `members` left.
    Left,
    /// `members` became admins.
    Promoted,
    /// `members` are no longer admins.
    Demoted,
    /// `members` were invited (the entry's sender invited them); each joins by adding itself
    /// (`PUT /v1/groups/{id}/members/{itself}`) or declines by removing itself.
    Invited,
}

/// One copy of a group message: the sender's ciphertext for one member device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupEnvelope {
    /// The member's account.
    pub account_id: String,
    /// The member's device.
    pub device_id: u32,
    /// The ciphertext, standard base64; at most 64 KiB decoded.
    pub body: String,
}

/// A member device, as a `group_mismatch` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct MemberDevice {
    /// The member's account.
    pub account_id: String,
    /// The device's number.
    pub device_id: u32,
}

impl From<MemberDeviceKey> for MemberDevice {
    fn from(device: MemberDeviceKey) -> Self {
        Self {
            account_id: device.account_id,
            device_id: device.device_id,
        }
    }
}

/// A member device with its identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberDeviceKey {
    /// The member's account.
    pub account_id: String,
    /// The device's number.
    pub device_id: u32,
    /// Its Ed25519 identity key, standard base64.
    pub identity_key: String,
}
