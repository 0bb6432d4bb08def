//! Traefik's router rule language (v3), the subset berth understands:
//! `Host`, `HostRegexp`, `Path`, `PathPrefix`, `PathRegexp`, `Method`,
//! combined with `&&`, `||`, `!` and parentheses. Values are quoted with
//! backticks or double quotes; `Host` and `PathPrefix` also take several
//! values (Traefik v2 style), any of which may match.
//!
//! ```
//! use berth_edge::routes::rule::{Rule, Request};
//! let rule = Rule::parse("Host(`app.example.com`) && PathPrefix(`/api`)").unwrap();
//! assert!(rule.matches(&Request { host: "app.example.com", path: "/api/users", method: "GET" }));
//! assert!(!rule.matches(&Request { host: "app.example.com", path: "/", method: "GET" }));
//! ```

use regex::Regex;

/// What a rule is matched against.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Normalised: lower case, no port.
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a str,
}

#[derive(Debug, Clone)]
pub enum Rule {
    Host(Vec<String>),
    HostRegexp(Regex),
    Path(Vec<String>),
    PathPrefix(Vec<String>),
    PathRegexp(Regex),
    Method(Vec<String>),
    Not(Box<Rule>),
    And(Box<Rule>, Box<Rule>),
    Or(Box<Rule>, Box<Rule>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("unexpected `{found}` at {at} in rule `{rule}`")]
    Unexpected {
        found: String,
        at: usize,
        rule: String,
    },
    #[error("matcher `{0}` is not supported by berth-edge")]
    Unsupported(String),
    #[error("bad regular expression `{0}`: {1}")]
    Regex(String, String),
    #[error("`{0}` needs at least one value")]
    NoValue(String),
}

impl Rule {
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let mut p = Parser { text, pos: 0 };
        let rule = p.or()?;
        p.skip_ws();
        if p.pos < text.len() {
            return Err(p.unexpected());
        }
        Ok(rule)
    }

    pub fn matches(&self, req: &Request<'_>) -> bool {
        match self {
            Rule::Host(hosts) => hosts.iter().any(|h| h == req.host),
            Rule::HostRegexp(re) => re.is_match(req.host),
            Rule::Path(paths) => paths.iter().any(|p| p == req.path),
            Rule::PathPrefix(prefixes) => prefixes.iter().any(|p| req.path.starts_with(p.as_str())),
            Rule::PathRegexp(re) => re.is_match(req.path),
            Rule::Method(methods) => methods.iter().any(|m| m.eq_ignore_ascii_case(req.method)),
            Rule::Not(r) => !r.matches(req),
            Rule::And(a, b) => a.matches(req) && b.matches(req),
            Rule::Or(a, b) => a.matches(req) || b.matches(req),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.text[self.pos..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn unexpected(&self) -> RuleError {
        RuleError::Unexpected {
            found: self.text[self.pos..].chars().take(12).collect(),
            at: self.pos,
            rule: self.text.to_string(),
        }
    }

    fn or(&mut self) -> Result<Rule, RuleError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Rule::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Rule, RuleError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = Rule::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Rule, RuleError> {
        if self.eat("!") {
            return Ok(Rule::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.unexpected());
            }
            return Ok(inner);
        }
        self.matcher()
    }

    fn matcher(&mut self) -> Result<Rule, RuleError> {
        self.skip_ws();
        let start = self.pos;
        while self.text[self.pos..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        if name.is_empty() || !self.eat("(") {
            self.pos = start;
            return Err(self.unexpected());
        }
        let mut values = Vec::new();
        loop {
            if self.eat(")") {
                break;
            }
            if !values.is_empty() && !self.eat(",") {
                return Err(self.unexpected());
            }
            values.push(self.string()?);
        }
        if values.is_empty() {
            return Err(RuleError::NoValue(name.to_string()));
        }
        let regex = |pattern: &str, case_insensitive: bool| {
            let full = if case_insensitive {
                format!("(?i){pattern}")
            } else {
                pattern.to_string()
            };
            Regex::new(&full).map_err(|e| RuleError::Regex(pattern.to_string(), e.to_string()))
        };
        Ok(match name {
            "Host" => Rule::Host(
                values
                    .iter()
                    .map(|v| v.trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
            ),
            "HostRegexp" => Rule::HostRegexp(regex(&values[0], true)?),
            "Path" => Rule::Path(values),
            "PathPrefix" => Rule::PathPrefix(values),
            "PathRegexp" => Rule::PathRegexp(regex(&values[0], false)?),
            "Method" => Rule::Method(values),
            other => return Err(RuleError::Unsupported(other.to_string())),
        })
    }

    fn string(&mut self) -> Result<String, RuleError> {
        self.skip_ws();
        let quote = match self.text[self.pos..].chars().next() {
            Some(q @ ('`' | '"')) => q,
            _ => return Err(self.unexpected()),
        };
        let body_start = self.pos + 1;
        let Some(len) = self.text[body_start..].find(quote) else {
            return Err(self.unexpected());
        };
        self.pos = body_start + len + 1;
        Ok(self.text[body_start..body_start + len].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(host: &'a str, path: &'a str) -> Request<'a> {
        Request {
            host,
            path,
            method: "GET",
        }
    }

    #[test]
    fn matchers_and_combinators() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("Host(`a.com`)", "a.com", "/", true),
            ("Host(`A.com`)", "a.com", "/", true),
            ("Host(`a.com`)", "b.com", "/", false),
            ("Host(`a.com`) || Host(`b.com`)", "b.com", "/", true),
            ("Host(`a.com`, `b.com`)", "b.com", "/", true),
            (
                "Host(`a.com`) && PathPrefix(`/api`)",
                "a.com",
                "/api/x",
                true,
            ),
            (
                "Host(`a.com`) && PathPrefix(`/api`)",
                "a.com",
                "/web",
                false,
            ),
            (
                "Host(`a.com`) && !PathPrefix(`/admin`)",
                "a.com",
                "/admin/x",
                false,
            ),
            (
                "(Host(`a.com`) || Host(`b.com`)) && Path(`/x`)",
                "b.com",
                "/x",
                true,
            ),
            ("Host(\"a.com\")", "a.com", "/", true),
            (
                "HostRegexp(`^[a-z]+\\.example\\.com$`)",
                "app.example.com",
                "/",
                true,
            ),
            (
                "HostRegexp(`^[a-z]+\\.example\\.com$`)",
                "a.b.example.com",
                "/",
                false,
            ),
            // v3 regexps are not anchored.
            ("HostRegexp(`example`)", "www.example.org", "/", true),
            ("PathRegexp(`^/v[0-9]+/`)", "x", "/v2/users", true),
            ("Method(`POST`)", "x", "/", false),
        ];
        for (rule, host, path, want) in cases {
            let parsed = Rule::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            assert_eq!(
                parsed.matches(&req(host, path)),
                *want,
                "{rule} on {host}{path}"
            );
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let r = Rule::parse("Host(`a`) || Host(`b`) && Path(`/x`)").unwrap();
        assert!(r.matches(&req("a", "/y")));
        assert!(!r.matches(&req("b", "/y")));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for bad in [
            "",
            "Host(`a`",
            "Host(a)",
            "Host(`a`) &&",
            "Host()",
            "ClientIP(`1.2.3.4`)",
            "HostRegexp(`(`)",
            "Host(`a`) Host(`b`)",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Rule::parse("Query(`a=b`)").unwrap_err(),
            RuleError::Unsupported("Query".into())
        );
    }
}
