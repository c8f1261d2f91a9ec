//! Expression tests written as data: `check(expression, expected JSON)`.

use super::*;
use serde_json::json;

fn contexts() -> Contexts {
    let mut ctx = Contexts::default();
    ctx.set(
        "github",
        json!({"event_name": "push", "ref": "refs/heads/main", "event": {"commits": [{"id": "a", "author": {"name": "Mona"}}, {"id": "b", "author": {"name": "Hubot"}}]}}),
    );
    ctx.set("env", json!({"FOO": "bar", "EMPTY": "", "NUM": "42"}));
    ctx.set("matrix", json!({"os": "ubuntu", "node": 18, "list": [1, 2, 3]}));
    ctx.set("needs", json!({"build": {"result": "success", "outputs": {"json": "{\"a\":[1,2]}"}}}));
    ctx
}

#[track_caller]
fn check(src: &str, expected: serde_json::Value) {
    let parsed = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let value = evaluate(&parsed, &contexts()).unwrap_or_else(|e| panic!("{src}: {e}"));
    assert_eq!(value, expected, "{src}");
}

#[track_caller]
fn check_parse_error(src: &str, message_part: &str) {
    let err = parse(src).expect_err(src);
    assert!(err.message.contains(message_part), "{src}: {}", err.message);
}

#[test]
fn literals() {
    check("null", json!(null));
    check("true", json!(true));
    check("42", json!(42));
    check("-3.5", json!(-3.5));
    check("0xff", json!(255));
    check("1e3", json!(1000));
    check("'it''s'", json!("it's"));
}

#[test]
fn loose_equality_and_coercion() {
    check("'ABC' == 'abc'", json!(true));
    check("1 == '1'", json!(true));
    check("true == 1", json!(true));
    check("true == 'true'", json!(false));
    check("null == 0", json!(true));
    check("null == ''", json!(true));
    check("'' == 0", json!(true));
    check("'abc' == 0", json!(false));
    check("matrix == matrix", json!(false));
    check("1 != 2", json!(true));
    check("'0x10' == 16", json!(true));
    check("matrix.node == '18'", json!(true));
}

#[test]
fn comparison() {
    check("1 < 2", json!(true));
    check("'a' < 'B'", json!(true));
    check("'10' > 9", json!(true));
    check("'x' > 1", json!(false));
    check("2 >= 2 && 2 <= 2", json!(true));
}

#[test]
fn logical_operators_return_operands() {
    check("env.FOO && 'yes' || 'no'", json!("yes"));
    check("env.EMPTY && 'yes' || 'no'", json!("no"));
    check("env.MISSING || 'default'", json!("default"));
    check("!env.EMPTY", json!(true));
    check("!!matrix", json!(true));
    check("(1 == 1) && (2 == 3)", json!(false));
}

#[test]
fn property_index_and_filters() {
    check("github.EVENT_NAME", json!("push"));
    check("github['event_name']", json!("push"));
    check("matrix.list[1]", json!(2));
    check("matrix.list[7]", json!(null));
    check("github.event.commits.*.id", json!(["a", "b"]));
    check("github.event.commits.*.author.name", json!(["Mona", "Hubot"]));
    check("contains(github.event.commits.*.author.name, 'hubot')", json!(true));
    check("github.nothing.deeper", json!(null));
}

#[test]
fn functions() {
    check("contains('Hello world', 'WORLD')", json!(true));
    check("contains(matrix.list, '2')", json!(true));
    check("startsWith(github.ref, 'refs/heads/')", json!(true));
    check("endsWith('file.TXT', '.txt')", json!(true));
    check("format('{0}-{1} {{x}}', 'a', 1)", json!("a-1 {x}"));
    check("join(matrix.list, ', ')", json!("1, 2, 3"));
    check("join(matrix.list)", json!("1,2,3"));
    check("toJSON(matrix.list)", json!("[\n  1,\n  2,\n  3\n]"));
    check("fromJSON(needs.build.outputs.json).a[1]", json!(2));
    check("fromJson('1.0')", json!(1));
    check("success()", json!(true));
    check("failure()", json!(false));
    check("always()", json!(true));
}

#[test]
fn parse_errors_name_the_problem() {
    check_parse_error("1 ==", "unexpected end");
    check_parse_error("foo.bar", "unrecognized named-value: 'foo'");
    check_parse_error("nope()", "unrecognized function");
    check_parse_error("contains('a')", "takes 2");
    check_parse_error("'open", "unterminated");
    check_parse_error("a ^ b", "unexpected symbol");
}

#[test]
fn status_function_detection() {
    assert!(parse("always() && 1").unwrap().uses_status_function());
    assert!(!parse("github.ref == 'x'").unwrap().uses_status_function());
}

#[test]
fn templates() {
    let ctx = contexts();
    assert_eq!(evaluate_template("${{ matrix.node }}", &ctx).unwrap(), json!(18));
    assert_eq!(evaluate_template("v${{ matrix.node }}-${{ matrix.os }}", &ctx).unwrap(), json!("v18-ubuntu"));
    assert_eq!(evaluate_template("${{ format('{{0}}') }}", &ctx).unwrap(), json!("{0}"));
    assert_eq!(evaluate_template("plain", &ctx).unwrap(), json!("plain"));
    assert!(split_template("${{ open").is_err());
}
