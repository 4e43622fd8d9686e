//! Wire types shared by the Sealpost server and its clients: request and response bodies,
//! problem details and upload status. Pure data (serde + utoipa schemas), no I/O.

mod accounts;
mod problem;
mod uploads;

pub use accounts::{
    Account, ChallengeRequest, ChallengeResponse, RegisterAccount, TokenRequest, TokenResponse,
};
pub use problem::{PROBLEM_JSON, Problem};
pub use uploads::{UploadKind, UploadState, UploadStatus};
