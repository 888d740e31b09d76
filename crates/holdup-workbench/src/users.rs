//! Users and authentication: tokens, roles, refusals audited.

use super::*;
use crate::store::users as db;

/// Actor names the workbench itself writes into the audit log; no user
/// may have one.
pub const RESERVED_ACTORS: &[&str] = &["system", "policy", "anonymous"];

/// A new API token: 32 random bytes, hex. Only its sha256 is stored.
pub(crate) fn new_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    Ok(format!("hwb_{}", hex::encode(b)))
}

impl Workbench {
    /// Authenticates a bearer token: the user it belongs to, enabled.
    /// Refusals are audited (see [`Workbench::record_refusal`]).
    pub fn authenticate(&self, token: Option<&str>) -> WbResult<User> {
        let Some(token) = token else {
            self.record_refusal("anonymous", "auth.failure", "no token", "failures")?;
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "no API token: send `Authorization: Bearer <token>` (the admin token is printed once at first start; an admin creates users with POST /api/users)",
            ));
        };
        let hash = sha256_hex(token.as_bytes());
        let user = db::by_token_hash(&self.db(), &hash)?;
        match user {
            Some(u) if !u.disabled => Ok(u),
            other => {
                let (reason, msg) = match &other {
                    Some(User { name, .. }) => (
                        format!("user {name} is disabled"),
                        format!("user {name} is disabled: ask an admin to enable it"),
                    ),
                    None => (
                        format!("unknown token (sha256 prefix {})", &hash[..12]),
                        "unknown or revoked API token: ask an admin for a valid one".to_string(),
                    ),
                };
                self.record_refusal("anonymous", "auth.failure", &reason, "failures")?;
                Err(Error::new(ErrorKind::Unauthenticated, msg))
            }
        }
    }

    /// Checks `user` has at least role `need`.
    pub fn require_role(user: &User, need: Role) -> WbResult<()> {
        if user.role < need {
            return Err(Error::forbidden(format!(
                "this needs role {} or higher; user {} has role {}",
                need.as_str(),
                user.name,
                user.role.as_str()
            )));
        }
        Ok(())
    }

    /// Audits a refusal (`action`: `auth.failure`, `access.refused`) by
    /// `actor`. A flood of refusals would grow the log without bound: per
    /// actor and action, at most one entry per [`AUTH_FAILURE_EVERY`], each
    /// counting (under `count_key`) the refusals it stands for. The count
    /// not yet written is kept in the store, so a restart loses none: it is
    /// written at the next start.
    pub fn record_refusal(
        &self,
        actor: &str,
        action: &str,
        reason: &str,
        count_key: &str,
    ) -> WbResult<()> {
        let key = format!("{actor}\n{action}");
        let every = AUTH_FAILURE_EVERY.as_secs() as i64;
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        let row = db::refusal(&tx, &key)?;
        let t = now();
        match row {
            Some((pending, last)) if t - last < every => {
                db::set_refusal_pending(&tx, &key, pending + 1, reason)?;
            }
            row => {
                let n = row.map_or(0, |r| r.0) + 1;
                let mut d = json!({"reason": reason});
                d[count_key] = json!(n);
                audit::append(&tx, t, actor, action, &d)?;
                db::refusal_logged(&tx, &key, actor, action, reason, t)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Writes the refusals counted but not yet audited (at start: those a
    /// previous server process counted before it stopped).
    pub(crate) fn flush_refusals(conn: &mut Connection) -> rusqlite::Result<()> {
        let tx = store::begin(conn)?;
        for db::PendingRefusals {
            key,
            actor,
            action,
            reason,
            pending,
        } in db::pending_refusals(&tx)?
        {
            let count_key = if action == "auth.failure" {
                "failures"
            } else {
                "refusals"
            };
            let mut d = json!({"reason": reason, "counted_before_restart": true});
            d[count_key] = json!(pending);
            audit::append(&tx, now(), &actor, &action, &d)?;
            db::clear_refusal(&tx, &key, now())?;
        }
        tx.commit()
    }

    /// Replaces a user's token (revoking the old one); returns the new one.
    /// Admins may rotate anyone's token, users their own.
    pub fn rotate_token(&self, actor: &User, name: &str) -> WbResult<String> {
        validate_name(name)?;
        if actor.name != name && actor.role < Role::Admin {
            return Err(Error::forbidden(format!(
                "only an admin or {name} may replace {name}'s token"
            )));
        }
        let token = new_token().map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        if !db::set_token_hash(&tx, name, &sha256_hex(token.as_bytes()))? {
            return Err(Error::not_found(format!("no user {name}")));
        }
        audit::append(
            &tx,
            now(),
            &actor.name,
            "user.token_rotated",
            &json!({"name": name}),
        )?;
        tx.commit()?;
        Ok(token)
    }

    /// Changes a user's role or disables/enables it (admin). The last
    /// enabled admin can be neither demoted nor disabled.
    pub fn update_user(
        &self,
        actor: &User,
        name: &str,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> WbResult<User> {
        validate_name(name)?;
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        let Some(cur) = db::by_name(&tx, name)? else {
            return Err(Error::not_found(format!("no user {name}")));
        };
        let new_role = role.unwrap_or(cur.role);
        let new_disabled = disabled.unwrap_or(cur.disabled);
        let demotes_an_admin =
            cur.role == Role::Admin && !cur.disabled && (new_role != Role::Admin || new_disabled);
        if demotes_an_admin && db::enabled_admins(&tx)? <= 1 {
            return Err(Error::conflict(format!(
                "{name} is the last enabled admin; make another admin first"
            )));
        }
        db::set_role_disabled(&tx, name, new_role, new_disabled)?;
        audit::append(
            &tx,
            now(),
            &actor.name,
            "user.updated",
            &json!({"name": name, "role": new_role.as_str(), "disabled": new_disabled}),
        )?;
        let user = db::by_name(&tx, name)?;
        tx.commit()?;
        user.ok_or_else(|| Error::not_found(format!("no user {name}")))
    }

    /// Creates a user and returns its token (shown once).
    pub fn create_user(&self, actor: &User, name: &str, role: Role) -> WbResult<(User, String)> {
        validate_name(name)?;
        if RESERVED_ACTORS.contains(&name) {
            return Err(Error::bad_request(format!(
                "user name {name:?} is reserved: the audit log uses it for the workbench itself ({}); pick another",
                RESERVED_ACTORS.join(", ")
            )));
        }
        let token = new_token().map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let mut conn = self.db();
        let tx = store::begin(&mut conn)?;
        if db::by_name(&tx, name)?.is_some() {
            return Err(Error::conflict(format!("user {name} already exists")));
        }
        let id = db::insert(&tx, name, role, &sha256_hex(token.as_bytes()), now())?;
        audit::append(
            &tx,
            now(),
            &actor.name,
            "user.created",
            &json!({"name": name, "role": role.as_str()}),
        )?;
        tx.commit()?;
        Ok((
            User {
                id,
                name: name.to_string(),
                role,
                disabled: false,
            },
            token,
        ))
    }

    pub fn list_users(&self) -> WbResult<Vec<User>> {
        Ok(db::list(&self.db())?)
    }
}
