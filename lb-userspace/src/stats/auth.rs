//! Basic authentication and the CSRF token of the admin forms. Every
//! comparison of a secret runs in constant time (`subtle`, and the hash
//! crates' own verification), so timing tells nothing about a password
//! or the token.
use super::config::{Secret, User};
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// Reads a password hash from the configuration.
pub fn parse_hash(text: &str) -> Result<Secret, String> {
    if text.starts_with("$argon2") {
        match argon2::PasswordHash::new(text) {
            Ok(hash) if hash.hash.is_some() && hash.salt.is_some() => {
                Ok(Secret::Argon2(text.to_owned()))
            }
            Ok(_) => Err("an argon2 PHC string without salt or hash".into()),
            Err(e) => Err(format!("not an argon2 PHC string: {e}")),
        }
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
        // bcrypt's own format: cost, 22 characters of salt, 31 of hash.
        let parts: Vec<&str> = text.split('$').collect();
        let valid = parts.len() == 4
            && parts[2].parse::<u32>().is_ok_and(|c| (4..=31).contains(&c))
            && parts[3].len() == 53;
        if valid {
            Ok(Secret::Bcrypt(text.to_owned()))
        } else {
            Err("not a bcrypt hash ($2b$COST$ and 53 characters)".into())
        }
    } else {
        Err("unknown hash: use argon2 ($argon2id$...) or bcrypt ($2b$...)".into())
    }
}

/// The user and password of an `Authorization: Basic ...` header.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Whether `password` is `secret`'s.
pub fn verify(secret: &Secret, password: &str) -> bool {
    match secret {
        Secret::Plain(expected) => {
            // Equal lengths are compared in constant time; a length
            // difference is revealed, as by every such comparison.
            bool::from(expected.as_bytes().ct_eq(password.as_bytes()))
        }
        Secret::Argon2(phc) => {
            use argon2::PasswordVerifier;
            argon2::PasswordHash::new(phc).is_ok_and(|hash| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
        }
        Secret::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
    }
}

/// The authenticated user's name for an `Authorization` header, or
/// `None`. Every user's secret is checked, so the time does not tell
/// which user names exist.
pub fn authenticate<'a>(users: &'a [User], header: Option<&str>) -> Option<&'a str> {
    let (name, password) = parse_basic(header?)?;
    let mut found = None;
    for user in users {
        let name_matches: bool = user.name.as_bytes().ct_eq(name.as_bytes()).into();
        if name_matches && verify(&user.secret, &password) {
            found = Some(user.name.as_str());
        }
    }
    found
}

/// The CSRF token: random per daemon start, shown only inside the page
/// (which needs the credentials); a forged cross-site POST carries the
/// browser's cached Basic credentials but cannot know it.
#[derive(Clone)]
pub struct CsrfToken(String);

impl CsrfToken {
    pub fn random() -> std::io::Result<CsrfToken> {
        let mut bytes = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
        Ok(CsrfToken(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    #[cfg(test)]
    pub fn fixed(text: &str) -> CsrfToken {
        CsrfToken(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, offered: Option<&str>) -> bool {
        offered.is_some_and(|o| bool::from(self.0.as_bytes().ct_eq(o.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<User> {
        vec![
            User {
                name: "admin".into(),
                secret: Secret::Plain("admin".into()),
            },
            User {
                name: "ops".into(),
                secret: parse_hash(&bcrypt::hash("s3cret", 4).unwrap()).unwrap(),
            },
        ]
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn only_the_right_password_of_a_known_user_authenticates() {
        let users = users();
        assert_eq!(
            authenticate(&users, Some(&basic("admin", "admin"))),
            Some("admin")
        );
        assert_eq!(
            authenticate(&users, Some(&basic("ops", "s3cret"))),
            Some("ops")
        );
        assert_eq!(authenticate(&users, Some(&basic("admin", "admin2"))), None);
        assert_eq!(authenticate(&users, Some(&basic("admin", ""))), None);
        assert_eq!(authenticate(&users, Some(&basic("ops", "admin"))), None);
        assert_eq!(authenticate(&users, Some(&basic("nobody", "admin"))), None);
        assert_eq!(authenticate(&users, None), None);
        assert_eq!(authenticate(&users, Some("Bearer abc")), None);
        assert_eq!(authenticate(&users, Some("Basic !!!not-base64")), None);
        assert_eq!(
            authenticate(&users, Some("basic YWRtaW46YWRtaW4=")),
            Some("admin")
        );
    }

    #[test]
    fn argon2_hashes_verify() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = argon2::Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let secret = parse_hash(&phc).unwrap();
        assert!(verify(&secret, "pw"));
        assert!(!verify(&secret, "pw "));
    }

    #[test]
    fn the_readme_hash_is_admin() {
        let secret = parse_hash("$argon2id$v=19$m=19456,t=2,p=1$bGJkLXJlYWRtZS1zYWx0IQ$Uk998EJgfI/HO9mzvcB5FNeOUug+DGW0LpMuHyVUg5s").unwrap();
        assert!(verify(&secret, "admin"));
        assert!(!verify(&secret, "Admin"));
    }

    #[test]
    fn bad_hashes_are_refused() {
        assert!(parse_hash("admin").is_err());
        assert!(parse_hash("$argon2id$garbage").is_err());
        assert!(parse_hash("$2b$10$short").is_err());
    }

    #[test]
    fn the_csrf_token_must_be_offered_exactly() {
        let token = CsrfToken::random().unwrap();
        assert_eq!(token.as_str().len(), 64);
        assert!(token.matches(Some(token.as_str())));
        assert!(!token.matches(None));
        assert!(!token.matches(Some("")));
        assert!(!token.matches(Some(&token.as_str()[..63])));
        assert_ne!(token.as_str(), CsrfToken::random().unwrap().as_str());
    }
}
