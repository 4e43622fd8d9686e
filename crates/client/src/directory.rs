//! The account's devices (linking a new one) and groups: the REST calls around chat.

use reqwest::Method;
use sealpost_proto::{
    CreateGroup, Device, Group, LinkCode, LinkDevice, Privacy, SetGroupMember, Usage,
};

use crate::{Client, ClientError, check};

impl Client {
    /// A single-use code with which a new device joins this account ([`Client::link_device`]).
    ///
    /// # Errors
    /// [`ClientError::Server`], or network trouble.
    pub async fn link_code(&self) -> Result<LinkCode, ClientError> {
        self.call(Method::POST, "/v1/devices/link-codes", None::<&()>)
            .await
    }

    /// Links a new device to an account with a code from [`Client::link_code`]; the device
    /// then logs in with [`Client::login_device`].
    ///
    /// # Errors
    /// [`ClientError::Server`] (`invalid-link-code`, `too-many-devices`), or network trouble.
    pub async fn link_device(&self, link: &LinkDevice) -> Result<Device, ClientError> {
        let res = self
            .http
            .post(self.url("/v1/devices"))
            .json(link)
            .send()
            .await
            .map_err(ClientError::Network)?;
        check(res).await?.json().await.map_err(ClientError::Network)
    }

    /// This account's devices.
    ///
    /// # Errors
    /// [`ClientError::Server`], or network trouble.
    pub async fn devices(&self) -> Result<Vec<Device>, ClientError> {
        self.call(Method::GET, "/v1/devices", None::<&()>).await
    }

    /// What this account uses of its storage and upload quotas.
    ///
    /// # Errors
    /// [`ClientError::Server`], or network trouble.
    pub async fn usage(&self) -> Result<Usage, ClientError> {
        self.call(Method::GET, "/v1/usage", None::<&()>).await
    }

    /// Creates a group of this account (its admin) and the accounts `members`.
    ///
    /// # Errors
    /// [`ClientError::Server`] (e.g. `no-such-account`), or network trouble.
    pub async fn create_group(&self, members: Vec<String>) -> Result<Group, ClientError> {
        let body = CreateGroup { members };
        self.call(Method::POST, "/v1/groups", Some(&body)).await
    }

    /// The groups this account is a member of.
    ///
    /// # Errors
    /// [`ClientError::Server`], or network trouble.
    pub async fn groups(&self) -> Result<Vec<Group>, ClientError> {
        self.call(Method::GET, "/v1/groups", None::<&()>).await
    }

    /// Who may add this account to groups.
    ///
    /// # Errors
    /// [`ClientError::Server`], or network trouble.
    pub async fn privacy(&self) -> Result<Privacy, ClientError> {
        self.call(Method::GET, "/v1/groups/privacy", None::<&()>)
            .await
    }

    /// Sets who may add this account to groups (others invite it).
    ///
    /// # Errors
    /// [`ClientError::Server`], or network trouble.
    pub async fn set_privacy(&self, privacy: Privacy) -> Result<Privacy, ClientError> {
        self.call(Method::PUT, "/v1/groups/privacy", Some(&privacy))
            .await
    }

    /// Adds `account` to `group` as a member (this account must be an admin; an account whose
    /// privacy setting does not allow it is invited instead, listed in `invited`). Naming this
    /// account joins a group it was invited to.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`not-group-admin`, `no-such-group`, …), or network trouble.
    pub async fn add_member(&self, group: &str, account: &str) -> Result<Group, ClientError> {
        let path = format!("/v1/groups/{group}/members/{account}");
        self.call(Method::PUT, &path, Some(&SetGroupMember::default()))
            .await
    }

    /// Removes `account` from `group` (admins), or leaves it (naming this account). For an
    /// invited account: declines (naming this account) or withdraws (admins) the invitation.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`not-group-admin`, `no-such-group`, …), or network trouble.
    pub async fn remove_member(&self, group: &str, account: &str) -> Result<(), ClientError> {
        let res = self
            .http
            .delete(self.url(&format!("/v1/groups/{group}/members/{account}")))
            .bearer_auth(self.bearer()?)
            .send()
            .await
            .map_err(ClientError::Network)?;
        check(res).await.map(drop)
    }
}
