//! Parsing `WWW-Authenticate` (RFC 7235) as registries send it.
//!
//! Registries and gateways disagree on details: quoted or bare values, spaces around `=`,
//! several challenges in one header, no `service` or `scope` at all. The parser is a small state
//! machine over characters that accepts all of these, ignores what it does not understand, and
//! never panics (it only slices at char boundaries it found itself).

/// The authentication scheme of one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    Basic,
    Other(String),
}

/// One challenge: a scheme and its parameters (names lowercased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: AuthScheme,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    pub fn service(&self) -> Option<&str> {
        self.param("service").filter(|s| !s.is_empty())
    }

    /// The scopes the registry asked for; a scope value may hold several, separated by spaces.
    pub fn scopes(&self) -> Vec<String> {
        self.param("scope")
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The `error` parameter (e.g. `insufficient_scope`, `invalid_token`).
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }
}

/// Parses every challenge in a header value; unknown syntax is skipped, never fatal.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut parser = Parser {
        chars: header.char_indices().collect(),
        pos: 0,
        text: header,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        parser.skip(|c| c.is_whitespace() || c == ',');
        let Some(token) = parser.token() else {
            // Not a token character: skip it so odd input cannot stall the loop.
            if parser.advance().is_none() {
                break;
            }
            continue;
        };
        parser.skip(char::is_whitespace);
        if parser.peek() == Some('=') {
            parser.advance();
            parser.skip(char::is_whitespace);
            let value = parser.value();
            if let Some(current) = challenges.last_mut() {
                current.params.push((token.to_ascii_lowercase(), value));
            }
        } else {
            let scheme = match token.to_ascii_lowercase().as_str() {
                "bearer" => AuthScheme::Bearer,
                "basic" => AuthScheme::Basic,
                _ => AuthScheme::Other(token),
            };
            challenges.push(Challenge {
                scheme,
                params: Vec::new(),
            });
        }
    }
    challenges
}

/// The challenge to answer: Bearer when offered (it carries scopes), else Basic.
pub fn preferred_challenge(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges
        .iter()
        .find(|c| c.scheme == AuthScheme::Bearer && c.realm().is_some())
        .or_else(|| challenges.iter().find(|c| c.scheme == AuthScheme::Basic))
}

struct Parser<'a> {
    chars: Vec<(usize, char)>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|(_, c)| *c)
    }

    fn advance(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn skip(&mut self, mut predicate: impl FnMut(char) -> bool) {
        while self.peek().is_some_and(&mut predicate) {
            self.pos += 1;
        }
    }

    fn byte_offset(&self, pos: usize) -> usize {
        self.chars.get(pos).map_or(self.text.len(), |(i, _)| *i)
    }

    /// A run of token characters (anything but separators, quotes and whitespace).
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        self.skip(|c| !(c.is_whitespace() || matches!(c, '=' | ',' | '"')));
        if self.pos == start {
            return None;
        }
        let (from, to) = (self.byte_offset(start), self.byte_offset(self.pos));
        self.text.get(from..to).map(str::to_string)
    }

    /// A quoted string (with `\` escapes, tolerant of a missing closing quote) or a bare value up
    /// to the next comma.
    fn value(&mut self) -> String {
        if self.peek() == Some('"') {
            self.advance();
            let mut value = String::new();
            while let Some(c) = self.advance() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(escaped) = self.advance() {
                            value.push(escaped);
                        }
                    }
                    other => value.push(other),
                }
            }
            value
        } else {
            let start = self.pos;
            self.skip(|c| c != ',');
            let (from, to) = (self.byte_offset(start), self.byte_offset(self.pos));
            self.text
                .get(from..to)
                .map(|s| s.trim().trim_matches('\'').to_string())
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_service_and_scope() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#;
        let challenges = parse_challenges(header);
        assert_eq!(challenges.len(), 1);
        let c = &challenges[0];
        assert_eq!(c.scheme, AuthScheme::Bearer);
        assert_eq!(c.realm(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service(), Some("registry.docker.io"));
        assert_eq!(c.scopes(), vec!["repository:library/alpine:pull,push"]);
    }

    #[test]
    fn bearer_without_service_or_scope() {
        let c = parse_challenges(r#"Bearer realm="https://docker.e2b.app/v2/token""#);
        assert_eq!(c[0].realm(), Some("https://docker.e2b.app/v2/token"));
        assert_eq!(c[0].service(), None);
        assert!(c[0].scopes().is_empty());
    }

    #[test]
    fn basic_and_multiple_challenges() {
        let c = parse_challenges(
            r#"Basic realm="Registry Realm", Bearer realm="https://a/t",service=x"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, AuthScheme::Basic);
        assert_eq!(c[0].realm(), Some("Registry Realm"));
        assert_eq!(c[1].service(), Some("x"));
        assert_eq!(preferred_challenge(&c).unwrap().scheme, AuthScheme::Bearer);
    }

    #[test]
    fn odd_quoting_and_spacing() {
        let c = parse_challenges(
            r#"bearer  Realm = "https://a/t" , service=bare-value,scope="a b",error="insufficient_scope""#,
        );
        assert_eq!(c[0].scheme, AuthScheme::Bearer);
        assert_eq!(c[0].realm(), Some("https://a/t"));
        assert_eq!(c[0].service(), Some("bare-value"));
        assert_eq!(c[0].scopes(), vec!["a", "b"]);
        assert_eq!(c[0].error(), Some("insufficient_scope"));
        let escaped = parse_challenges(r#"Bearer realm="a\"b""#);
        assert_eq!(escaped[0].realm(), Some("a\"b"));
        let unterminated = parse_challenges(r#"Bearer realm="https://a/t"#);
        assert_eq!(unterminated[0].realm(), Some("https://a/t"));
        let single = parse_challenges("Bearer realm='https://a/t'");
        assert_eq!(single[0].realm(), Some("https://a/t"));
    }

    #[test]
    fn multiple_scope_params_are_all_readable() {
        let c = parse_challenges(r#"Bearer realm="r",scope="repository:a:pull repository:b:pull""#);
        assert_eq!(
            c[0].scopes(),
            vec!["repository:a:pull", "repository:b:pull"]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let inputs = [
            "",
            "=",
            "==,,\"",
            "\"",
            "Bearer",
            "Bearer =",
            "realm=x",
            "Bearer realm=",
            "Bearer realm=\"\\",
            "é=ü, Bæarer ré=\"ø\"",
            ",,,, ,",
            "Basic dXNlcjpwYXNz",
        ];
        for input in inputs {
            let _ = parse_challenges(input);
        }
        // Every prefix of a real header, cut at every char boundary.
        let header = r#"Bearer realm="https://a/ü",service="s",scope="repository:x:pull""#;
        for (i, _) in header.char_indices() {
            let _ = parse_challenges(&header[..i]);
        }
        assert_eq!(preferred_challenge(&parse_challenges("Negotiate")), None);
    }

    #[test]
    fn random_headers_never_panic() {
        let alphabet: Vec<char> = "Bearer Basic realm=\"',\\ =é\u{1F600}\t:/"
            .chars()
            .collect();
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let header: String = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            for challenge in parse_challenges(&header) {
                let _ = (challenge.realm(), challenge.service(), challenge.scopes());
            }
        }
    }
}
