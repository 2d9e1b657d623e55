//! Which statements of the binlog change the table being migrated.
//!
//! A migration copies into a shadow built from the table's definition at the start; a DDL on
//! the table during the migration (a new index, a column, a trigger, a rename, a truncate)
//! would be lost at the cut-over, so the migration must stop. The statement is read with the
//! SQL tokenizer — comments, quoted names and `db.table` qualifiers cannot fool it — and only
//! the table names a statement acts on are compared, in the session's default schema when
//! unqualified: a column that happens to be called like the table does not count.
//!
//! Statements that are not understood but mention the table's name are counted (stopping a
//! migration needlessly is safe; missing a change is not).

use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// A word token: its text and whether it was quoted.
fn word(t: &Token) -> Option<(&str, bool)> {
    match t {
        Token::Word(w) => Some((w.value.as_str(), w.quote_style.is_some())),
        _ => None,
    }
}

fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    matches!(t.and_then(word), Some((v, false)) if v.eq_ignore_ascii_case(kw))
}

/// Reads `name` or `schema.name` at `i`; returns (schema, name) and the index after it.
fn table_name<'a>(toks: &[&'a Token], i: usize) -> Option<((Option<&'a str>, &'a str), usize)> {
    let (first, _) = word(toks.get(i)?)?;
    if matches!(toks.get(i + 1), Some(Token::Period)) {
        let (second, _) = word(toks.get(i + 2)?)?;
        return Some(((Some(first), second), i + 3));
    }
    Some(((None, first), i + 1))
}

/// True when `query`, run with default schema `default_schema`, acts on `db`.`table`.
pub fn touches_table(db: &str, table: &str, default_schema: &str, query: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&MySqlDialect {}, query).tokenize() else {
        return mentions(query, table);
    };
    let toks: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let is_ours = |name: (Option<&str>, &str)| {
        name.1.eq_ignore_ascii_case(table)
            && name.0.unwrap_or(default_schema).eq_ignore_ascii_case(db)
    };
    // Every table name that follows `keyword` (e.g. `ON`, `TABLE`) anywhere in the statement.
    let names_after = |keyword: &str| -> Vec<(Option<&str>, &str)> {
        (0..toks.len())
            .filter(|&i| is_kw(toks.get(i).copied(), keyword))
            .filter_map(|i| {
                let mut j = i + 1;
                if is_kw(toks.get(j).copied(), "IF") {
                    j += 2; // IF [NOT] EXISTS
                    if is_kw(toks.get(j - 1).copied(), "NOT") {
                        j += 1;
                    }
                }
                table_name(&toks, j).map(|(n, _)| n)
            })
            .collect()
    };
    let Some((first, false)) = toks.first().and_then(|t| word(t)) else {
        return mentions(query, table);
    };
    match first.to_ascii_uppercase().as_str() {
        // ALTER [ONLINE] [IGNORE] TABLE name ...
        "ALTER" => {
            let mut i = 1;
            while is_kw(toks.get(i).copied(), "ONLINE") || is_kw(toks.get(i).copied(), "IGNORE") {
                i += 1;
            }
            if !is_kw(toks.get(i).copied(), "TABLE") {
                return false;
            }
            names_after("TABLE").into_iter().take(1).any(is_ours)
        }
        // DROP TABLE a, b; DROP INDEX i ON t; DROP TRIGGER has no table name.
        "DROP" => {
            if is_kw(toks.get(1).copied(), "TRIGGER") || is_kw(toks.get(1).copied(), "VIEW") {
                return false;
            }
            if names_after("ON").into_iter().any(is_ours) {
                return true;
            }
            table_list(&toks, &names_after("TABLE"))
                .into_iter()
                .any(is_ours)
                || table_list(&toks, &names_after("TABLES"))
                    .into_iter()
                    .any(is_ours)
        }
        // RENAME TABLE a TO b, c TO d: the table renamed away, or something renamed onto it.
        "RENAME" => {
            let mut names = Vec::new();
            let mut i = 1;
            if is_kw(toks.get(i).copied(), "TABLE") || is_kw(toks.get(i).copied(), "TABLES") {
                i += 1;
            }
            while let Some((n, next)) = table_name(&toks, i) {
                names.push(n);
                i = next;
                if is_kw(toks.get(i).copied(), "TO") || matches!(toks.get(i), Some(Token::Comma)) {
                    i += 1;
                } else {
                    break;
                }
            }
            names.into_iter().any(is_ours)
        }
        "TRUNCATE" => {
            let i = if is_kw(toks.get(1).copied(), "TABLE") {
                2
            } else {
                1
            };
            table_name(&toks, i).is_some_and(|(n, _)| is_ours(n))
        }
        // CREATE [UNIQUE|FULLTEXT|SPATIAL] INDEX .. ON t; CREATE TRIGGER .. ON t;
        // CREATE [OR REPLACE] TABLE t.
        "CREATE" => {
            let creates = |kw: &str| toks.iter().take(8).any(|t| is_kw(Some(*t), kw));
            if creates("INDEX") || creates("TRIGGER") {
                names_after("ON").into_iter().any(is_ours)
            } else if creates("TABLE") {
                names_after("TABLE").into_iter().take(1).any(is_ours)
            } else {
                false
            }
        }
        // Transaction control, grants, maintenance (OPTIMIZE/ANALYZE keep the definition),
        // statements on other objects.
        "BEGIN" | "COMMIT" | "ROLLBACK" | "XA" | "SAVEPOINT" | "GRANT" | "REVOKE" | "FLUSH"
        | "OPTIMIZE" | "ANALYZE" | "CHECK" | "REPAIR" | "SET" | "USE" => false,
        _ => mentions(query, table),
    }
}

/// The names of a `TABLE a, b, c` list starting at each of `starts` (the first is given).
fn table_list<'a>(
    toks: &[&'a Token],
    starts: &[(Option<&'a str>, &'a str)],
) -> Vec<(Option<&'a str>, &'a str)> {
    let mut out: Vec<(Option<&'a str>, &'a str)> = starts.to_vec();
    // Follow commas after the first name of the list.
    let Some(first) = starts.first() else {
        return out;
    };
    let Some(mut i) = toks
        .iter()
        .position(|t| word(t).map(|(v, _)| v) == Some(first.1))
    else {
        return out;
    };
    i += 1;
    while matches!(toks.get(i), Some(Token::Period)) {
        i += 2;
    }
    while matches!(toks.get(i), Some(Token::Comma)) {
        match table_name(toks, i + 1) {
            Some((n, next)) => {
                out.push(n);
                i = next;
            }
            None => break,
        }
    }
    out
}

/// The conservative fallback: the table's name appears as a word.
fn mentions(query: &str, table: &str) -> bool {
    let q = query.to_lowercase();
    let t = table.to_lowercase();
    q.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .any(|w| w == t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(q: &str) -> bool {
        touches_table("shop", "orders", "shop", q)
    }

    #[test]
    fn statements_on_the_table() {
        assert!(hit("ALTER TABLE orders ADD COLUMN x INT"));
        assert!(hit("/* app */ ALTER TABLE `orders` ADD INDEX (a)"));
        assert!(hit("alter online table shop.orders engine=InnoDB"));
        assert!(hit("CREATE INDEX idx_a ON orders (a)"));
        assert!(hit("CREATE UNIQUE INDEX u ON `shop`.`orders` (a)"));
        assert!(hit(
            "CREATE DEFINER=`root`@`%` TRIGGER trg AFTER INSERT ON orders FOR EACH ROW SET @x = 1"
        ));
        assert!(hit("DROP INDEX idx_a ON orders"));
        assert!(hit(
            "DROP TABLE IF EXISTS `other`, `orders` /* generated by server */"
        ));
        assert!(hit("RENAME TABLE orders TO orders_2"));
        assert!(hit("RENAME TABLE a TO b, orders_new TO orders"));
        assert!(hit("TRUNCATE TABLE orders"));
        assert!(hit("TRUNCATE orders"));
        // Qualified in another session's default schema.
        assert!(touches_table(
            "shop",
            "orders",
            "other",
            "ALTER TABLE shop.orders ADD x INT"
        ));
    }

    #[test]
    fn statements_on_other_tables() {
        assert!(!hit("ALTER TABLE orders_ledger ADD COLUMN orders INT"));
        assert!(!hit("ALTER TABLE other ADD COLUMN orders INT"));
        assert!(!hit("CREATE TABLE `_orders_new` LIKE `orders`"));
        assert!(!hit("ALTER TABLE `_orders_new` ADD COLUMN x INT"));
        assert!(!hit(
            "CREATE TABLE IF NOT EXISTS `orders_rs_sentry` (id INT PRIMARY KEY)"
        ));
        assert!(!hit("DROP TABLE `orders_rs_sentry`"));
        assert!(!hit("OPTIMIZE TABLE orders"));
        assert!(!hit("DROP TRIGGER trg"));
        // Unqualified names belong to the session's default schema.
        assert!(!touches_table(
            "shop",
            "orders",
            "other",
            "ALTER TABLE orders ADD x INT"
        ));
        assert!(!touches_table(
            "shop",
            "orders",
            "shop",
            "ALTER TABLE other.orders ADD x INT"
        ));
    }

    #[test]
    fn unknown_statements_fall_back_to_the_name() {
        assert!(hit("LOCK INSTANCE FOR BACKUP orders"));
        assert!(!hit("LOCK INSTANCE FOR BACKUP"));
    }
}
