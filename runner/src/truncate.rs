//! Shortening ids and text for table cells, and the display width the table
//! layout measures cells with.
//!
//! The width tables cover the main East Asian Wide/Fullwidth blocks and the
//! common combining marks (the classic `wcwidth` ranges), not every code point
//! Unicode assigns; ASCII, which is what image and container metadata almost
//! always is, is exact.

/// Wide (two-column) ranges: Hangul Jamo, CJK, kana, Hangul syllables,
/// compatibility ideographs, fullwidth forms, emoji, CJK extensions.
const WIDE: &[(u32, u32)] = &[
    (0x1100, 0x115F),
    (0x231A, 0x231B),
    (0x2329, 0x232A),
    (0x23E9, 0x23EC),
    (0x23F0, 0x23F0),
    (0x23F3, 0x23F3),
    (0x25FD, 0x25FE),
    (0x2614, 0x2615),
    (0x2648, 0x2653),
    (0x267F, 0x267F),
    (0x2693, 0x2693),
    (0x26A1, 0x26A1),
    (0x26AA, 0x26AB),
    (0x26BD, 0x26BE),
    (0x26C4, 0x26C5),
    (0x26CE, 0x26CE),
    (0x26D4, 0x26D4),
    (0x26EA, 0x26EA),
    (0x26F2, 0x26F3),
    (0x26F5, 0x26F5),
    (0x26FA, 0x26FA),
    (0x26FD, 0x26FD),
    (0x2705, 0x2705),
    (0x270A, 0x270B),
    (0x2728, 0x2728),
    (0x274C, 0x274C),
    (0x274E, 0x274E),
    (0x2753, 0x2755),
    (0x2757, 0x2757),
    (0x2795, 0x2797),
    (0x27B0, 0x27B0),
    (0x27BF, 0x27BF),
    (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50),
    (0x2B55, 0x2B55),
    (0x2E80, 0x303E),
    (0x3041, 0x33FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA000, 0xA4CF),
    (0xA960, 0xA97F),
    (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF),
    (0xFE10, 0xFE19),
    (0xFE30, 0xFE6F),
    (0xFF00, 0xFF60),
    (0xFFE0, 0xFFE6),
    (0x16FE0, 0x16FE4),
    (0x17000, 0x18CFF),
    (0x1B000, 0x1B2FF),
    (0x1F004, 0x1F004),
    (0x1F0CF, 0x1F0CF),
    (0x1F18E, 0x1F18E),
    (0x1F191, 0x1F19A),
    (0x1F200, 0x1F251),
    (0x1F300, 0x1F320),
    (0x1F32D, 0x1F335),
    (0x1F337, 0x1F37C),
    (0x1F37E, 0x1F393),
    (0x1F3A0, 0x1F3CA),
    (0x1F3CF, 0x1F3D3),
    (0x1F3E0, 0x1F3F0),
    (0x1F3F4, 0x1F3F4),
    (0x1F3F8, 0x1F43E),
    (0x1F440, 0x1F440),
    (0x1F442, 0x1F4FC),
    (0x1F4FF, 0x1F53D),
    (0x1F54B, 0x1F54E),
    (0x1F550, 0x1F567),
    (0x1F57A, 0x1F57A),
    (0x1F595, 0x1F596),
    (0x1F5A4, 0x1F5A4),
    (0x1F5FB, 0x1F64F),
    (0x1F680, 0x1F6C5),
    (0x1F6CC, 0x1F6CC),
    (0x1F6D0, 0x1F6D2),
    (0x1F6D5, 0x1F6D7),
    (0x1F6EB, 0x1F6EC),
    (0x1F6F4, 0x1F6FC),
    (0x1F7E0, 0x1F7EB),
    (0x1F90C, 0x1F93A),
    (0x1F93C, 0x1F945),
    (0x1F947, 0x1F9FF),
    (0x1FA70, 0x1FAFF),
    (0x20000, 0x2FFFD),
    (0x30000, 0x3FFFD),
];

/// Zero-width ranges: combining marks, zero-width spaces and joiners,
/// variation selectors.
const ZERO_WIDTH: &[(u32, u32)] = &[
    (0x0300, 0x036F),
    (0x0483, 0x0489),
    (0x0591, 0x05BD),
    (0x05BF, 0x05BF),
    (0x05C1, 0x05C2),
    (0x05C4, 0x05C5),
    (0x05C7, 0x05C7),
    (0x0610, 0x061A),
    (0x064B, 0x065F),
    (0x0670, 0x0670),
    (0x06D6, 0x06DC),
    (0x06DF, 0x06E4),
    (0x06E7, 0x06E8),
    (0x06EA, 0x06ED),
    (0x0E31, 0x0E31),
    (0x0E34, 0x0E3A),
    (0x0E47, 0x0E4E),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x200B, 0x200F),
    (0x2060, 0x2064),
    (0x20D0, 0x20FF),
    (0xFE00, 0xFE0F),
    (0xFE20, 0xFE2F),
    (0xFEFF, 0xFEFF),
    (0xE0100, 0xE01EF),
];

fn in_table(c: char, table: &[(u32, u32)]) -> bool {
    let c = u32::from(c);
    table
        .binary_search_by(|&(low, high)| {
            if high < c {
                std::cmp::Ordering::Less
            } else if low > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether a character is East Asian Wide or Fullwidth.
pub fn is_wide(c: char) -> bool {
    in_table(c, WIDE)
}

/// Columns a character occupies on a terminal, as go-runewidth (which docker's
/// table writer measures cells with) counts them: control characters and
/// combining marks 0, wide characters 2, everything else 1.
pub fn char_width(c: char) -> usize {
    let code = u32::from(c);
    if code < 0x20 || (0x7F..=0x9F).contains(&code) || in_table(c, ZERO_WIDTH) {
        0
    } else if is_wide(c) {
        2
    } else {
        1
    }
}

/// Columns a string occupies: the sum of [`char_width`].
pub fn display_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

/// docker/cli's `formatter.Ellipsis`: cut `text` to at most `max_width`
/// display columns, the last of them an `…`. Its own width rule counts wide
/// characters as 2 and every other character (combining marks included) as 1.
/// A width of 1 keeps the first character alone, 0 gives nothing.
pub fn ellipsis(text: &str, max_width: usize) -> String {
    if max_width == 0 {
        return String::new();
    }
    let chars: Vec<char> = text.chars().collect();
    if max_width == 1 {
        return chars.first().map(char::to_string).unwrap_or_default();
    }
    // Running width after each character.
    let mut running = Vec::with_capacity(chars.len());
    let mut width = 0;
    for &c in &chars {
        width += if is_wide(c) { 2 } else { 1 };
        running.push(width);
    }
    if width <= max_width {
        return text.to_string();
    }
    let budget = max_width - 1;
    for i in 0..running.len() - 1 {
        if running[i] <= budget && running[i + 1] > budget {
            let mut out: String = chars[..=i].iter().collect();
            out.push('…');
            return out;
        }
    }
    // Only reachable when the first character alone is wider than the budget;
    // docker leaves the text whole then.
    text.to_string()
}

/// docker's `stringid.TruncateID`: drop an `algorithm:` prefix and keep at
/// most 12 characters (`<missing>` and short names pass through).
pub fn truncate_id(id: &str) -> &str {
    let id = id.split_once(':').map_or(id, |(_, hex)| hex);
    match id.char_indices().nth(12) {
        Some((cut, _)) => &id[..cut],
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for table in [WIDE, ZERO_WIDTH] {
            for pair in table.windows(2) {
                assert!(pair[0].1 < pair[1].0, "{pair:x?}");
            }
            for &(low, high) in table {
                assert!(low <= high);
            }
        }
    }

    #[test]
    fn display_width_counts_ascii_as_one_column_each() {
        assert_eq!(display_width("/bin/sh -c #(nop)"), 17);
        assert_eq!(display_width(""), 0);
    }

    #[test]
    fn display_width_counts_cjk_as_two_and_combining_marks_as_zero() {
        assert_eq!(display_width("日本"), 4);
        assert_eq!(display_width("e\u{301}"), 1);
        assert_eq!(display_width("ｈｉ"), 4);
        assert_eq!(display_width("…"), 1);
    }

    #[test]
    fn ellipsis_leaves_text_that_fits() {
        assert_eq!(ellipsis("/bin/bash", 45), "/bin/bash");
        let exactly = "a".repeat(45);
        assert_eq!(ellipsis(&exactly, 45), exactly);
    }

    #[test]
    fn ellipsis_keeps_44_columns_and_an_ellipsis_for_history() {
        let created_by =
            "/bin/sh -c #(nop) ADD file:07cdbabf782942af0a3d6d7b1ad4a3a0e4b2d1e1 in / ";
        assert_eq!(
            ellipsis(created_by, 45),
            "/bin/sh -c #(nop) ADD file:07cdbabf782942af0…"
        );
        assert_eq!(ellipsis(created_by, 45).chars().count(), 45);
    }

    #[test]
    fn ellipsis_counts_wide_characters_as_two_columns() {
        assert_eq!(ellipsis("日本語のテキスト", 7), "日本語…");
        assert_eq!(ellipsis("a日本語", 4), "a日…");
        assert_eq!(ellipsis("a日本語", 3), "a…");
    }

    #[test]
    fn ellipsis_counts_combining_marks_as_one_column_like_docker() {
        assert_eq!(ellipsis("e\u{301}e\u{301}e\u{301}", 4), "e\u{301}e…");
    }

    #[test]
    fn ellipsis_of_width_one_or_zero_has_no_ellipsis() {
        assert_eq!(ellipsis("abc", 1), "a");
        assert_eq!(ellipsis("abc", 0), "");
        assert_eq!(ellipsis("", 1), "");
    }

    #[test]
    fn ellipsis_leaves_text_whole_when_the_first_character_is_too_wide() {
        assert_eq!(ellipsis("日本語", 2), "日本語");
    }

    #[test]
    fn truncate_id_drops_the_algorithm_and_keeps_12_characters() {
        let id = format!("sha256:d5c1fca2cdc4{}", "0".repeat(52));
        assert_eq!(truncate_id(&id), "d5c1fca2cdc4");
        assert_eq!(truncate_id("d5c1fca2cdc4aaaa"), "d5c1fca2cdc4");
        assert_eq!(truncate_id("<missing>"), "<missing>");
    }
}
