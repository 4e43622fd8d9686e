//! `seal device …` and `seal group …`: linking another device to the account, and groups to
//! send to with `seal send --group`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use ed25519_dalek::SigningKey;
use sealpost_client::Client;
use sealpost_proto::{GroupAdds, LinkDevice, Privacy};

use super::{Failure, Identity, Session, logged_in, write_private};

/// `seal device …`
#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Makes a single-use code (valid 10 minutes) to link another device with `seal device
    /// link`; prints it
    Code,
    /// Links this config dir as a new device of the account with phone number PHONE, with a
    /// code from one of its devices; makes the device's key, logs in and publishes its
    /// end-to-end keys
    Link {
        /// The account's phone number in E.164 form
        #[arg(long)]
        phone: String,
        /// The code `seal device code` printed on another device of the account
        #[arg(long)]
        code: String,
        /// A name for this device
        #[arg(long, default_value = "seal")]
        name: String,
    },
    /// Lists the account's devices
    List,
}

/// `seal group …`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// Creates a group with the accounts of these phone numbers (this account is its admin);
    /// prints its id
    Create {
        /// A member's phone number (repeat for more)
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// Adds the account with a phone number to a group (admins only)
    Add {
        /// The group's id
        group: String,
        /// The new member's phone number
        #[arg(long)]
        member: String,
    },
    /// Removes the account with a phone number from a group (admins), or leaves it (your own
    /// number)
    Remove {
        /// The group's id
        group: String,
        /// The member's phone number
        #[arg(long)]
        member: String,
    },
    /// Lists this account's groups: id, then members
    List,
    /// Joins a group this account was invited to
    Join {
        /// The group's id (from the invitation `seal listen` showed)
        group: String,
    },
    /// Declines an invitation to a group
    Decline {
        /// The group's id
        group: String,
    },
    /// Shows, or sets, who may add this account to groups (others invite it)
    Privacy {
        /// anyone, contacts (accounts this one has written to) or nobody
        #[arg(value_parser = ["anyone", "contacts", "nobody"])]
        group_adds: Option<String>,
    },
}

/// Runs a `seal device` command with the config dir `dir` and the `--server` flag `server`.
pub(crate) async fn device(
    command: DeviceCommand,
    server: Option<String>,
    dir: &Path,
) -> Result<(), Failure> {
    let session = dir.join("session.json");
    match command {
        DeviceCommand::Code => {
            let code = logged_in(server, &session)?.link_code().await?;
            println!("{}", code.code);
            eprintln!(
                "on the new device: seal device link --phone <this account's phone> --code {} \
                 (valid until {})",
                code.code, code.expires_at
            );
        }
        DeviceCommand::Link { phone, code, name } => {
            let server = super::server(server, dir)?;
            link(&server, dir, phone, code, name).await?;
        }
        DeviceCommand::List => {
            for device in logged_in(server, &session)?.devices().await? {
                println!(
                    "{}\t{}\t{}",
                    device.device_id, device.name, device.created_at
                );
            }
        }
    }
    Ok(())
}

async fn link(
    server: &str,
    dir: &Path,
    phone: String,
    code: String,
    name: String,
) -> Result<(), Failure> {
    let identity_path = dir.join("identity.json");
    if identity_path.exists() {
        return Err(Failure(
            format!(
                "{} already holds an identity: link from a config dir of its own (--config-dir)",
                identity_path.display()
            ),
            2,
        ));
    }
    let key = SigningKey::from_bytes(&rand::random());
    let mut client = Client::new(server);
    let device = client
        .link_device(&LinkDevice {
            phone: phone.clone(),
            code,
            name,
            identity_key: STANDARD.encode(key.verifying_key().as_bytes()),
        })
        .await?;
    write_private(
        &identity_path,
        &Identity {
            phone: phone.clone(),
            device_id: device.device_id,
            secret_key: STANDARD.encode(key.to_bytes()),
        },
    )?;
    let token = client.login_device(&phone, device.device_id, &key).await?;
    write_private(
        &dir.join("session.json"),
        &Session {
            server: server.to_owned(),
            token,
        },
    )?;
    super::publish_keys(&client, dir, device.device_id, &key).await?;
    eprintln!(
        "linked as device {} of {phone}; key kept in {}",
        device.device_id,
        identity_path.display()
    );
    Ok(())
}

/// Runs a `seal group` command as the account with phone number `me`.
pub(crate) async fn group(command: GroupCommand, client: &Client, me: &str) -> Result<(), Failure> {
    match command {
        GroupCommand::Join { group } => {
            let account = client.lookup(me).await?.account_id;
            let group = client.add_member(&group, &account).await?;
            eprintln!("joined {}; {} members", group.group_id, group.members.len());
        }
        GroupCommand::Decline { group } => {
            let account = client.lookup(me).await?.account_id;
            client.remove_member(&group, &account).await?;
            eprintln!("declined the invitation to {group}");
        }
        GroupCommand::Privacy { group_adds } => {
            let privacy = match group_adds {
                Some(value) => {
                    let group_adds = GroupAdds::parse(&value);
                    client.set_privacy(Privacy { group_adds }).await?
                }
                None => client.privacy().await?,
            };
            println!("{}", privacy.group_adds.as_str());
        }
        GroupCommand::Create { members } => {
            let mut accounts = Vec::with_capacity(members.len());
            for phone in &members {
                accounts.push(client.lookup(phone).await?.account_id);
            }
            let group = client.create_group(accounts).await?;
            println!("{}", group.group_id);
            eprintln!("created a group of {} members", group.members.len());
        }
        GroupCommand::Add { group, member } => {
            let account = client.lookup(&member).await?.account_id;
            let group = client.add_member(&group, &account).await?;
            if group.invited.contains(&account) {
                eprintln!("{member} only lets some accounts add them: invited instead");
            } else {
                eprintln!("{member} added; {} members", group.members.len());
            }
        }
        GroupCommand::Remove { group, member } => {
            let account = client.lookup(&member).await?.account_id;
            client.remove_member(&group, &account).await?;
            eprintln!("{member} is no longer in {group}");
        }
        GroupCommand::List => {
            for group in client.groups().await? {
                let members: Vec<&str> = group
                    .members
                    .iter()
                    .map(|m| m.account_id.as_str())
                    .collect();
                println!("{}\t{}", group.group_id, members.join(","));
            }
        }
    }
    Ok(())
}
