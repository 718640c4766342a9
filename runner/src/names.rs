//! Container names: docker-style generated `adjective_surname` names and the
//! rule a user-given name must follow.
//!
//! The word lists are a subset of moby's `namesgenerator`; which name comes
//! out is decided by the random number the caller passes in, so the choice is
//! testable.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome",
    "beautiful", "blissful", "bold", "boring", "brave", "busy", "charming", "clever",
    "compassionate", "competent", "condescending", "confident", "cool", "cranky", "crazy",
    "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic",
    "elated", "elegant", "eloquent", "epic", "exciting", "fervent", "festive", "flamboyant",
    "focused", "friendly", "frosty", "funny", "gallant", "gifted", "goofy", "gracious",
    "great", "happy", "hardcore", "heuristic", "hopeful", "hungry", "infallible",
    "inspiring", "intelligent", "interesting", "jolly", "jovial", "keen", "kind",
    "laughing", "loving", "lucid", "magical", "modest", "musing", "mystifying", "naughty",
    "nervous", "nice", "nifty", "nostalgic", "objective", "optimistic", "peaceful",
    "pedantic", "pensive", "practical", "priceless", "quirky", "quizzical", "recursing",
    "relaxed", "reverent", "romantic", "sad", "serene", "sharp", "silly", "sleepy", "stoic",
    "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty", "trusting",
    "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful",
    "xenodochial", "youthful", "zealous", "zen",
];

#[rustfmt::skip]
const SURNAMES: &[&str] = &[
    "agnesi", "albattani", "allen", "almeida", "antonelli", "archimedes", "ardinghelli",
    "aryabhata", "austin", "babbage", "banach", "bardeen", "bartik", "bassi", "beaver",
    "bell", "benz", "bhabha", "bhaskara", "black", "blackburn", "blackwell", "bohr",
    "booth", "borg", "bose", "bouman", "boyd", "brahmagupta", "brattain", "brown", "buck",
    "burnell", "cannon", "carson", "cartwright", "carver", "cerf", "chandrasekhar",
    "chaplygin", "chatelet", "chatterjee", "chebyshev", "clarke", "cohen", "colden", "cori",
    "cray", "curie", "curran", "darwin", "davinci", "dewdney", "dhawan", "diffie",
    "dijkstra", "dirac", "driscoll", "dubinsky", "easley", "edison", "einstein", "elbakyan",
    "elgamal", "elion", "ellis", "engelbart", "euclid", "euler", "faraday", "feistel",
    "fermat", "fermi", "feynman", "franklin", "gagarin", "galileo", "galois", "ganguly",
    "gates", "gauss", "germain", "goldberg", "goldstine", "goldwasser", "golick", "goodall",
    "gould", "greider", "grothendieck", "haibt", "hamilton", "haslett", "hawking",
    "heisenberg", "hellman", "hermann", "herschel", "hertz", "heyrovsky", "hodgkin",
    "hofstadter", "hoover", "hopper", "hugle", "hypatia", "ishizaka", "jackson", "jang",
    "jemison", "jennings", "jepsen", "johnson", "joliot", "jones", "kalam", "kapitsa",
    "kare", "keldysh", "keller", "kepler", "khayyam", "khorana", "kilby", "kirch", "knuth",
    "kowalevski", "lalande", "lamarr", "lamport", "leakey", "leavitt", "lederberg",
    "lehmann", "lewin", "lichterman", "liskov", "lovelace", "lumiere", "mahavira",
    "margulis", "matsumoto", "maxwell", "mayer", "mccarthy", "mcclintock", "mclaren",
    "mclean", "mcnulty", "meitner", "mendel", "mendeleev", "meninsky", "merkle", "mestorf",
    "mirzakhani", "montalcini", "moore", "morse", "moser", "murdock", "napier", "nash",
    "neumann", "newton", "nightingale", "nobel", "noether", "northcutt", "noyce", "panini",
    "pare", "pascal", "pasteur", "payne", "perlman", "pike", "poincare", "poitras",
    "proskuriakova", "ptolemy", "raman", "ramanujan", "rhodes", "ride", "ritchie",
    "robinson", "roentgen", "rosalind", "rubin", "saha", "sammet", "sanderson", "satoshi",
    "shamir", "shannon", "shaw", "shirley", "shockley", "shtern", "sinoussi", "snyder",
    "solomon", "spence", "stonebraker", "sutherland", "swanson", "swartz", "swirles",
    "taussig", "tesla", "tharp", "thompson", "torvalds", "tu", "turing", "varahamihira",
    "vaughan", "villani", "visvesvaraya", "volhard", "wescoff", "wilbur", "wiles",
    "williams", "williamson", "wilson", "wing", "wozniak", "wright", "wu", "yalow",
    "yonath", "zhukovsky",
];

/// The name for a random number: `adjective_surname`, and from the second try
/// on (`retry > 0`, after a name collision) a digit appended, as moby's
/// `GetRandomName` does. Like moby, never `boring_wozniak`.
pub fn generated_name(random: u64, retry: u32) -> String {
    // Each retry draws a new name, as moby's does: the same words with
    // another digit gave 10 names for 16 tries.
    let random = match retry {
        0 => random,
        _ => splitmix64(random.wrapping_add(u64::from(retry))),
    };
    let adjective = ADJECTIVES[(random % ADJECTIVES.len() as u64) as usize];
    let rest = random / ADJECTIVES.len() as u64;
    let mut surname = SURNAMES[(rest % SURNAMES.len() as u64) as usize];
    if adjective == "boring" && surname == "wozniak" {
        // Steve Wozniak is not boring.
        surname = SURNAMES[0];
    }
    let mut name = format!("{adjective}_{surname}");
    if retry > 0 {
        let digit = rest / SURNAMES.len() as u64 % 10;
        name.push_str(&digit.to_string());
    }
    name
}

/// One step of splitmix64: spreads a seed and a small counter over all
/// bits, so neighbouring inputs give unrelated names.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A random number for [`generated_name`], from the process's hash seed (no
/// extra dependency; names need to differ, not to be unpredictable).
pub fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    hasher.finish()
}

/// Whether a user-given container name is acceptable to docker:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, optionally after one leading `/`.
fn is_valid_name(name: &str) -> bool {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest: Vec<char> = chars.collect();
    first_ok
        && !rest.is_empty()
        && rest
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A user-given container name as docker keeps it: without the one
/// leading `/` it accepts (`--name /web` names `web`, so that a second
/// `--name web` conflicts), or docker's message when it is not a name.
pub fn given_name(name: &str) -> anyhow::Result<&str> {
    if !is_valid_name(name) {
        anyhow::bail!("{}", invalid_name_message(name));
    }
    Ok(name.strip_prefix('/').unwrap_or(name))
}

/// docker's message for an invalid name.
pub fn invalid_name_message(name: &str) -> String {
    format!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_name_is_adjective_underscore_surname() {
        for random in [0, 1, 42, 12_345, u64::MAX] {
            let name = generated_name(random, 0);
            let (adjective, surname) = name.split_once('_').expect("has an underscore");
            assert!(ADJECTIVES.contains(&adjective), "{name}");
            assert!(SURNAMES.contains(&surname), "{name}");
            assert!(is_valid_name(&name), "{name}");
        }
    }

    #[test]
    fn generated_name_is_determined_by_the_random_number() {
        assert_eq!(generated_name(7, 0), generated_name(7, 0));
        assert_eq!(generated_name(0, 0), "admiring_agnesi");
        assert_ne!(generated_name(0, 0), generated_name(1, 0));
    }

    #[test]
    fn a_retry_draws_a_new_name_with_a_digit() {
        for random in [0, 1, 42, u64::MAX] {
            let tries: Vec<String> = (0..16).map(|r| generated_name(random, r)).collect();
            for name in &tries[1..] {
                let (words, digit) = name.split_at(name.len() - 1);
                assert!(digit.chars().all(|c| c.is_ascii_digit()), "{name}");
                let (adjective, surname) = words.split_once('_').expect("has an underscore");
                assert!(
                    ADJECTIVES.contains(&adjective) && SURNAMES.contains(&surname),
                    "{name}"
                );
            }
            let mut distinct = tries.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), tries.len(), "{tries:?}");
        }
    }

    #[test]
    fn generated_name_is_never_boring_wozniak() {
        let boring = ADJECTIVES.iter().position(|&a| a == "boring").unwrap() as u64;
        let wozniak = SURNAMES.iter().position(|&s| s == "wozniak").unwrap() as u64;
        let random = boring + wozniak * ADJECTIVES.len() as u64;
        assert_eq!(generated_name(random, 0), "boring_agnesi");
    }

    #[test]
    fn word_lists_hold_only_lowercase_letters_without_duplicates() {
        for list in [ADJECTIVES, SURNAMES] {
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len());
            assert!(list
                .iter()
                .all(|w| w.chars().all(|c| c.is_ascii_lowercase())));
        }
    }

    #[test]
    fn random_seed_varies_between_calls() {
        let seeds: Vec<u64> = (0..8).map(|_| random_seed()).collect();
        assert!(seeds.windows(2).any(|pair| pair[0] != pair[1]));
    }

    #[test]
    fn is_valid_name_follows_dockers_pattern() {
        assert!(is_valid_name("base-container"));
        assert!(is_valid_name("/app_1.v2"));
        assert!(is_valid_name("a1"));
        assert!(!is_valid_name("a"));
        assert!(!is_valid_name("-app"));
        assert!(!is_valid_name("my app"));
        assert!(!is_valid_name("app/x"));
        assert!(!is_valid_name(""));
    }
}
