//! `surge promote --http ADDR [--token T]`: make the standby at ADDR the primary of a new
//! epoch (`POST /admin/promote`), and `surge fence`: make a primary stop taking writes
//! (`POST /admin/fence`). Prints the node's JSON answer; exit 0 on success.

use crate::admin_client;

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The node's HTTP address (its `http`).
    #[arg(long)]
    pub http: String,
    /// The admin token (`admin.token` in the node's config); or SURGE_ADMIN_TOKEN.
    #[arg(long, env = "SURGE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA (PEM) that signed the node's `admin.tls_cert`: the call goes over HTTPS,
    /// the certificate checked against it; or SURGE_ADMIN_CA.
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
}

pub fn promote(args: AdminArgs) -> anyhow::Result<()> {
    call(&args, "/admin/promote")
}

pub fn fence(args: AdminArgs) -> anyhow::Result<()> {
    call(&args, "/admin/fence")
}

fn call(args: &AdminArgs, path: &str) -> anyhow::Result<()> {
    if let Some(ca) = &args.ca {
        admin_client::trust_ca(ca)?;
    }
    let token = args.token.as_deref().unwrap_or("");
    let (status, body) = admin_client::post(&args.http, path, token)?;
    print!("{body}");
    anyhow::ensure!(status == 200, "{} answered {status}", args.http);
    Ok(())
}
