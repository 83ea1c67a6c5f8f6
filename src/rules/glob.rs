//! A small glob for torrent names: `*` any run of characters, `?` one character, everything
//! else literal. ASCII case is ignored, since names are typed by people and releases vary
//! in case. No regex crate: a glob on the metainfo name is what operators ask for, and it
//! cannot be made to backtrack exponentially (see `matches`).

/// Whether `name` matches `pattern` as a whole.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let n: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Iterative matcher with one backtrack point (the last `*`): linear-ish, never
    // exponential, whatever pattern a rules file holds.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("*.iso", "debian-12.ISO"));
        assert!(matches("debian-*", "debian-12.iso"));
        assert!(matches("lab-???-plain.bin", "lab-tcp-plain.bin"));
        assert!(matches("*", ""));
        assert!(!matches("*.iso", "x.iso.exe"));
        assert!(!matches("a?", "a"));
        assert!(matches("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!matches("*a*b*c*d", &"ab".repeat(1000)));
    }
}
