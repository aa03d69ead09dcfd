//! The configuration as `/api/v1/system/settings` shows it: every choice
//! this node runs with, each secret replaced by whether it is set.

use berth_api::{
    AuthSettings, GcSettings, LdapSettings, MetadataSettings, OidcSettings, Settings,
    StorageSettings, UploadSettings, WorkloadSettings,
};
use berth_config::{Config, Storage, redact_url};

pub(crate) fn view(config: &Config) -> Settings {
    let a = &config.auth;
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    Settings {
        tls: config.tls.is_some(),
        auth: AuthSettings {
            service: a.service.clone(),
            realm: a.realm.clone(),
            token_lifetime_secs: a.token_lifetime.as_secs(),
            auto_create_projects: a.auto_create_projects,
            max_failed_logins: a.max_failed_logins,
            max_failed_logins_per_address: a.max_failed_logins_per_address,
            failed_login_window_secs: a.failed_login_window.as_secs(),
            audit_file: path(&a.audit_file),
            audit_syslog: path(&a.audit_syslog),
            ldap: a.ldap.as_ref().map(|l| LdapSettings {
                url: l.url.clone(),
                start_tls: l.start_tls,
                ca_file: path(&l.ca_file),
                bind_dn: l.bind_dn.clone(),
                bind_password_set: l.bind_password.as_deref().is_some_and(|p| !p.is_empty()),
                user_base_dn: l.user_base_dn.clone(),
                user_filter: l.user_filter.clone(),
                username_attribute: l.username_attribute.clone(),
                email_attribute: l.email_attribute.clone(),
                group_base_dn: l.group_base_dn.clone(),
                group_filter: l.group_filter.clone(),
                group_member_attribute: l.group_member_attribute.clone(),
                group_name_attribute: l.group_name_attribute.clone(),
                use_member_of: l.use_member_of,
                member_of_attribute: l.member_of_attribute.clone(),
                nested_groups: l.nested_groups,
                max_nesting_depth: l.max_nesting_depth,
                pool_size: l.pool_size,
                timeout_secs: l.timeout_secs,
                admin_group_dn: a.ldap_admin_group_dn.clone(),
            }),
            oidc: a.oidc.as_ref().map(|o| OidcSettings {
                issuer_url: o.issuer_url.clone(),
                client_id: o.client_id.clone(),
                client_secret_set: o.client_secret.as_deref().is_some_and(|s| !s.is_empty()),
                redirect_url: o.redirect_url.clone(),
                scopes: o.scopes.clone(),
                groups_claim: o.groups_claim.clone(),
                username_claim: o.username_claim.clone(),
                admin_group: o.admin_group.clone(),
            }),
            workload: a
                .workload
                .iter()
                .map(|w| WorkloadSettings {
                    issuer: w.issuer.clone(),
                    audience: w.audience.clone(),
                    claims: w.claims.clone(),
                    robot: w.robot.clone(),
                })
                .collect(),
        },
        storage: storage(config),
        metadata: MetadataSettings {
            engine: if berth_meta::sqlite_path(&config.metadata_url).is_some() {
                "sqlite".into()
            } else {
                "postgres".into()
            },
            url: redact_url(&config.metadata_url),
        },
        uploads: UploadSettings {
            ttl_secs: config.uploads.ttl.as_secs(),
            reap_interval_secs: config.uploads.reap_interval.as_secs(),
        },
        gc: GcSettings {
            interval_secs: config.gc.interval.as_secs(),
            grace_secs: config.gc.grace.as_secs(),
            delete_untagged: config.gc.delete_untagged,
            restore_window_secs: config.gc.restore_window.as_secs(),
            orphan_batch: config.gc.orphan_batch,
        },
    }
}

fn storage(config: &Config) -> StorageSettings {
    let redirect_secs = config.storage.redirect().map(|d| d.as_secs());
    match &config.storage {
        Storage::Fs => StorageSettings {
            backend: "fs".into(),
            location: Some(config.data_dir.display().to_string()),
            bucket: None,
            prefix: None,
            redirect_secs,
        },
        Storage::S3(s) => StorageSettings {
            backend: "s3".into(),
            location: s
                .endpoint
                .clone()
                .or_else(|| Some(format!("aws:{}", s.region))),
            bucket: Some(s.bucket.clone()),
            prefix: Some(s.prefix.clone()),
            redirect_secs,
        },
        Storage::Gcs(g) => StorageSettings {
            backend: "gcs".into(),
            location: None,
            bucket: Some(g.bucket.clone()),
            prefix: Some(g.prefix.clone()),
            redirect_secs,
        },
        Storage::Azure(z) => StorageSettings {
            backend: "azure".into(),
            location: Some(
                z.endpoint
                    .clone()
                    .unwrap_or_else(|| format!("https://{}.blob.core.windows.net", z.account)),
            ),
            bucket: Some(z.container.clone()),
            prefix: Some(z.prefix.clone()),
            redirect_secs,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_view() {
        let raw = berth_config::RawConfig {
            metadata: Some(berth_config::RawMetadata {
                url: Some("postgres://berth:hunter2-db@db:5432/berth".into()),
            }),
            ..Default::default()
        };
        let toml = r#"
[auth.ldap]
url = "ldaps://ldap.example.com"
bind_dn = "cn=search,dc=example,dc=com"
bind_password = "hunter2-ldap"
user_base_dn = "ou=people,dc=example,dc=com"

[auth.oidc]
issuer_url = "https://idp.example.com"
client_id = "berth"
client_secret = "hunter2-oidc"
redirect_url = "https://registry.example.com/api/v1/auth/oidc/callback"
"#;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, toml).unwrap();
        let config = berth_config::load(Some(&file), |_| None, raw).unwrap();
        let json = serde_json::to_string(&view(&config)).unwrap();
        for secret in ["hunter2-db", "hunter2-ldap", "hunter2-oidc"] {
            assert!(!json.contains(secret), "{secret} leaked: {json}");
        }
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["metadata"]["engine"], "postgres");
        assert_eq!(v["auth"]["ldap"]["bind_password_set"], true);
        assert_eq!(v["auth"]["oidc"]["client_secret_set"], true);
        assert_eq!(v["auth"]["ldap"]["url"], "ldaps://ldap.example.com");
    }
}
