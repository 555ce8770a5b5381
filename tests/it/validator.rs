//! The request validator (tests/support/model.rs) against the real botocore models, one test per
//! kind of violation, each also passing a valid request of the same shape; and the proxy's
//! answer to an invalid request, end to end through moto. Tests only: it must not change what
//! the validator or the proxy do.

use aws_sdk_cognitoidentityprovider as cip;
use serde_json::{Value, json};

use crate::support::model::{
    self, Service, Violation, check_list_users_filter, compile_pattern, rest_request,
    validate_request,
};
use crate::support::*;

fn cognito(operation: &str, input: Value) -> Vec<Violation> {
    model::model(Service::CognitoIdp).validate(operation, &input)
}

fn dynamodb(operation: &str, input: Value) -> Vec<Violation> {
    model::model(Service::DynamoDb).validate(operation, &input)
}

/// Panics unless there is exactly one violation, at `path`, whose constraint contains `constraint`.
#[track_caller]
fn assert_one(violations: &[Violation], path: &str, constraint: &str) {
    let shown: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert_eq!(violations.len(), 1, "want one violation, got {shown:#?}");
    let v = &violations[0];
    assert_eq!(v.path, path, "{shown:#?}");
    assert!(
        v.constraint.contains(constraint),
        "want a constraint containing {constraint:?}, got {shown:#?}"
    );
}

#[track_caller]
fn assert_valid(violations: &[Violation]) {
    let shown: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(violations.is_empty(), "want no violation, got {shown:#?}");
}

const POOL: &str = "eu-west-1_Abc123";

fn create_user() -> Value {
    json!({
        "UserPoolId": POOL,
        "Username": "taro.yamada@example.com",
        "TemporaryPassword": "T3mp!pass",
        "MessageAction": "SUPPRESS",
        "DesiredDeliveryMediums": ["EMAIL"],
        "UserAttributes": [
            {"Name": "email", "Value": "taro.yamada@example.com"},
            {"Name": "email_verified", "Value": "true"},
            {"Name": "name", "Value": "山田 太郎"},
        ],
        "ClientMetadata": {"source": "onboarding"},
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn put_item() -> Value {
    json!({
        "TableName": "onboard-state",
        "Item": {"pk": {"S": "user#1"}, "n": {"N": "1"}},
        "ConditionExpression": "attribute_not_exists(#pk) OR #n < :max",
        "ExpressionAttributeNames": {"#pk": "pk", "#n": "n"},
        "ExpressionAttributeValues": {":max": {"N": "3"}},
    })
}

fn transact_update(update_expression: &str, values: Value) -> Value {
    json!({
        "TransactItems": [
            {"Put": put_item()},
            {"Update": {
                "TableName": "onboard-state",
                "Key": {"pk": {"S": "user#1"}},
                "UpdateExpression": update_expression,
                "ExpressionAttributeNames": {"#c": "count"},
                "ExpressionAttributeValues": values,
            }},
        ]
    })
}

#[test]
fn every_pattern_of_the_three_models_compiles() {
    let mut count = 0;
    for service in Service::ALL {
        for (shape, pattern) in model::model(service).patterns() {
            count += 1;
            if let Err(e) = compile_pattern(pattern) {
                panic!("{service} {shape}: {pattern}: {e}");
            }
        }
    }
    assert!(
        count > 70,
        "only {count} patterns: the models did not load whole"
    );
}

#[test]
fn java_regex_syntax_is_translated() {
    let full =
        |pattern: &str, text: &str| compile_pattern(pattern).unwrap().is_match(text).unwrap();
    // A `-` after a range is literal in Java.
    assert!(full("[A-Za-z0-9-_+/=.]+", "a-_+/=.Z9"));
    assert!(!full("[A-Za-z0-9-_+/=.]+", "a,b"));
    // Java's \w and \s are ASCII, inside classes too; \S is everything else.
    assert!(full(r"[\w+=/]+", "a_1+="));
    assert!(!full(r"[\w+=/]+", "é"));
    assert!(full(r"[\S]+", "é!"));
    assert!(!full(r"[\S]+", "a b"));
    assert!(full(r"[\w\s+=.@-]+", "a b@c"));
    assert!(
        !full(r"[\w\s+=.@-]+", "a\u{3000}b"),
        "U+3000 is not Java's \\s"
    );
    // \p{Print} is ASCII.
    assert!(full(r"\p{Print}+", "a b~"));
    assert!(!full(r"\p{Print}+", "é"));
    // Surrogate pairs name the supplementary planes; \u escapes are code points.
    let xml = r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*";
    assert!(full(xml, "a😀\té"));
    assert!(!full(xml, "a\u{1}"));
    assert!(full(
        r"arn:[\w-]+:iam::[0-9]+:role(\u002F)([\u0021-\u007E]+\u002F)?([\w+=,.@-]+)",
        "arn:aws:iam::123:role/a/b"
    ));
    // The lookbehind, and a full match, not a search.
    let name = r"^[0-9A-Za-z\.\-_]*(?<!\.)$";
    assert!(full(name, "a.b"));
    assert!(!full(name, "a.b."));
    assert!(full(r"[\w-]+_[0-9a-zA-Z]+", POOL));
    assert!(!full(r"[\w-]+_[0-9a-zA-Z]+", "eu-west-1_abc def"));
    assert!(!full("[0-9]+", "12a"));
}

#[test]
fn an_unknown_operation_is_caught() {
    let input = json!({"UserPoolId": POOL, "Username": "alice"});
    assert_one(
        &cognito("AdminFetchUser", input.clone()),
        "AdminFetchUser",
        "unknown operation",
    );
    assert_valid(&cognito("AdminGetUser", input));
}

#[test]
fn a_missing_required_member_is_caught() {
    assert_one(
        &cognito("AdminGetUser", json!({"UserPoolId": POOL})),
        "AdminGetUser.Username",
        "required member missing",
    );
    let attributes = json!([{"Name": "email", "Value": "a@example.com"}, {"Value": "x"}]);
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "UserAttributes", attributes),
        ),
        "AdminCreateUser.UserAttributes[1].Name",
        "required member missing",
    );
    assert_valid(&cognito("AdminCreateUser", create_user()));
}

#[test]
fn an_unknown_member_is_caught() {
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "Groups", json!(["providers"])),
        ),
        "AdminCreateUser.Groups",
        "unknown member",
    );
    let attributes = json!([{"Name": "email", "Value": "a@example.com", "Verified": true}]);
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "UserAttributes", attributes),
        ),
        "AdminCreateUser.UserAttributes[0].Verified",
        "unknown member",
    );
    assert_valid(&cognito("AdminCreateUser", create_user()));
}

#[test]
fn a_value_of_the_wrong_type_is_caught() {
    let list = json!({"UserPoolId": POOL, "Limit": 60});
    assert_valid(&cognito("ListUsers", list.clone()));
    assert_one(
        &cognito("ListUsers", with(list.clone(), "Limit", json!("60"))),
        "ListUsers.Limit",
        "expected an integer, got a string",
    );
    assert_one(
        &cognito("ListUsers", with(list, "Limit", json!(1.5))),
        "ListUsers.Limit",
        "expected an integer",
    );
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "ForceAliasCreation", json!("true")),
        ),
        "AdminCreateUser.ForceAliasCreation",
        "expected a boolean",
    );
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "DesiredDeliveryMediums", json!("EMAIL")),
        ),
        "AdminCreateUser.DesiredDeliveryMediums",
        "expected a list",
    );
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "UserAttributes", json!([["email"]])),
        ),
        "AdminCreateUser.UserAttributes[0]",
        "expected a structure",
    );
    assert_valid(&cognito(
        "AdminCreateUser",
        with(create_user(), "ForceAliasCreation", json!(true)),
    ));
}

#[test]
fn string_length_counts_code_points_not_bytes() {
    let fits = "あ".repeat(128);
    assert!(
        fits.len() > 128,
        "128 Japanese characters are more than 128 bytes"
    );
    assert_valid(&cognito(
        "AdminCreateUser",
        with(create_user(), "Username", json!(fits)),
    ));
    let over = "あ".repeat(129);
    let violations = cognito(
        "AdminCreateUser",
        with(create_user(), "Username", json!(over)),
    );
    assert_one(
        &violations,
        "AdminCreateUser.Username",
        "length 129 > max 128",
    );
    let attributes = json!([
        {"Name": "email", "Value": "a@example.com"},
        {"Name": "name", "Value": "x"},
        {"Name": "locale", "Value": "é".repeat(2049)},
    ]);
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "UserAttributes", attributes),
        ),
        "AdminCreateUser.UserAttributes[2].Value",
        "length 2049 > max 2048",
    );
    // As AWS does, every constraint the value breaks is reported.
    let empty = cognito(
        "AdminCreateUser",
        with(create_user(), "Username", json!("")),
    );
    let constraints: Vec<(&str, &str)> = empty
        .iter()
        .map(|v| (v.path.as_str(), v.constraint.as_str()))
        .collect();
    assert_eq!(
        constraints,
        [
            ("AdminCreateUser.Username", "length 0 < min 1"),
            (
                "AdminCreateUser.Username",
                r"does not fully match pattern [\p{L}\p{M}\p{S}\p{N}\p{P}]+"
            ),
        ]
    );
}

#[test]
fn a_pattern_must_match_the_whole_value() {
    let violations = cognito(
        "AdminCreateUser",
        with(create_user(), "Username", json!("山田 太郎")),
    );
    assert_one(
        &violations,
        "AdminCreateUser.Username",
        r"does not fully match pattern [\p{L}\p{M}\p{S}\p{N}\p{P}]+",
    );
    assert!(
        violations[0].to_string().contains("山田 太郎"),
        "{}",
        violations[0]
    );
    assert_valid(&cognito(
        "AdminCreateUser",
        with(create_user(), "Username", json!("山田太郎")),
    ));
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "UserPoolId", json!("eu-west-1_abc def")),
        ),
        "AdminCreateUser.UserPoolId",
        "does not fully match pattern",
    );
}

#[test]
fn an_enum_value_must_be_listed() {
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "MessageAction", json!("suppress")),
        ),
        "AdminCreateUser.MessageAction",
        "not one of enum [RESEND, SUPPRESS]",
    );
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(
                create_user(),
                "DesiredDeliveryMediums",
                json!(["EMAIL", "PIGEON"]),
            ),
        ),
        "AdminCreateUser.DesiredDeliveryMediums[1]",
        "not one of enum",
    );
    assert_valid(&cognito(
        "AdminCreateUser",
        with(create_user(), "MessageAction", json!("RESEND")),
    ));
}

#[test]
fn a_list_must_have_a_size_within_bounds() {
    let item = json!({"Put": put_item()});
    let hundred = json!({"TransactItems": vec![item.clone(); 100]});
    assert_valid(&dynamodb("TransactWriteItems", hundred));
    assert_one(
        &dynamodb(
            "TransactWriteItems",
            json!({"TransactItems": vec![item; 101]}),
        ),
        "TransactWriteItems.TransactItems",
        "items 101 > max 100",
    );
    assert_one(
        &dynamodb("TransactWriteItems", json!({"TransactItems": []})),
        "TransactWriteItems.TransactItems",
        "items 0 < min 1",
    );
    let get = json!({"TableName": "onboard-state", "Key": {"pk": {"S": "a"}}});
    assert_one(
        &dynamodb("GetItem", with(get.clone(), "AttributesToGet", json!([]))),
        "GetItem.AttributesToGet",
        "items 0 < min 1",
    );
    assert_valid(&dynamodb(
        "GetItem",
        with(get, "AttributesToGet", json!(["pk"])),
    ));
}

#[test]
fn map_keys_and_values_are_checked_against_their_shapes() {
    let arn = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_Abc123";
    let tag = |key: String, value: String| json!({"ResourceArn": arn, "Tags": {key: value}});
    assert_valid(&cognito(
        "TagResource",
        tag("k".repeat(128), "v".repeat(256)),
    ));
    let long_key = "k".repeat(129);
    assert_one(
        &cognito("TagResource", tag(long_key.clone(), "v".into())),
        &format!("TagResource.Tags.{long_key}"),
        "key length 129 > max 128",
    );
    assert_one(
        &cognito("TagResource", tag("team".into(), "v".repeat(257))),
        "TagResource.Tags.team",
        "length 257 > max 256",
    );
    assert_one(
        &cognito(
            "AdminCreateUser",
            with(create_user(), "ClientMetadata", json!({"source": 1})),
        ),
        "AdminCreateUser.ClientMetadata.source",
        "expected a string",
    );
    assert_one(
        &dynamodb(
            "PutItem",
            with(
                put_item(),
                "ExpressionAttributeValues",
                json!({":max": "3"}),
            ),
        ),
        "PutItem.ExpressionAttributeValues.:max",
        "expected a structure",
    );
}

#[test]
fn an_integer_must_be_in_range() {
    let list = |limit: i64| json!({"UserPoolId": POOL, "Limit": limit});
    assert_valid(&cognito("ListUsers", list(60)));
    assert_valid(&cognito("ListUsers", list(0)));
    assert_one(
        &cognito("ListUsers", list(61)),
        "ListUsers.Limit",
        "61 > max 60",
    );
    assert_one(
        &cognito("ListUsers", list(-1)),
        "ListUsers.Limit",
        "-1 < min 0",
    );
}

#[test]
fn a_union_must_have_exactly_one_member() {
    let item = |value: Value| with(put_item(), "Item", json!({"pk": value, "n": {"N": "1"}}));
    assert_valid(&dynamodb("PutItem", item(json!({"S": "a"}))));
    assert_one(
        &dynamodb("PutItem", item(json!({"S": "a", "N": "1"}))),
        "PutItem.Item.pk",
        "exactly one member set, has 2 (",
    );
    assert_one(
        &dynamodb("PutItem", item(json!({}))),
        "PutItem.Item.pk",
        "exactly one member set, has 0",
    );
    // Inside a transaction item, and inside a map attribute.
    let nested = json!({"M": {"inner": {"BOOL": true, "NULL": true}}});
    let transact = json!({"TransactItems": [{"Put": item(nested)}]});
    assert_one(
        &dynamodb("TransactWriteItems", transact),
        "TransactWriteItems.TransactItems[0].Put.Item.pk.M.inner",
        "exactly one member set",
    );
}

#[test]
fn a_list_users_filter_follows_cognitos_grammar() {
    let list = |filter: &str| json!({"UserPoolId": POOL, "Filter": filter});
    for good in [
        "",
        r#"email = "taro.yamada@example.com""#,
        r#"sub ^= "3""#,
        r#"cognito:user_status = "FORCE_CHANGE_PASSWORD""#,
        r#"status = "Enabled""#,
        r#"name = "say \"hi\"""#,
        r#"email="a@example.com""#,
    ] {
        assert_valid(&cognito("ListUsers", list(good)));
        assert_eq!(check_list_users_filter(good), Ok(()), "{good}");
    }
    for (bad, why) in [
        (
            r#"email = "a@example.com" and name = "x""#,
            "text after the value",
        ),
        (r#"email = "a" name = "b""#, "text after the value"),
        ("email = a@example.com", "double quotes"),
        (r#"email != "a@example.com""#, "operator"),
        (
            r#"custom:team = "x""#,
            "not an attribute Cognito can filter on",
        ),
        (r#"locale = "ja""#, "not an attribute Cognito can filter on"),
        (r#"email = "a@example.com"#, "closing quote"),
        (r#"= "x""#, "no attribute"),
    ] {
        assert_one(&cognito("ListUsers", list(bad)), "ListUsers.Filter", why);
    }
    // `email = ""` is 10 characters; the value makes up the rest.
    let filter_of = |length: usize| format!(r#"email = "{}""#, "a".repeat(length - 10));
    let at_max = filter_of(256);
    assert_eq!(at_max.chars().count(), 256);
    assert_valid(&cognito("ListUsers", list(&at_max)));
    let over = filter_of(257);
    assert_one(
        &cognito("ListUsers", list(&over)),
        "ListUsers.Filter",
        "length 257 > max 256",
    );
}

#[test]
fn every_expression_token_is_defined_and_every_definition_used() {
    assert_valid(&dynamodb("PutItem", put_item()));
    // Used and not defined.
    let undefined = with(
        put_item(),
        "ConditionExpression",
        json!("attribute_not_exists(#pk) OR #n < :limit"),
    );
    let violations = dynamodb("PutItem", undefined);
    let shown: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert_eq!(violations.len(), 2, "{shown:#?}");
    assert_eq!(
        violations[0].path, "PutItem.ConditionExpression",
        "{shown:#?}"
    );
    assert!(violations[0].constraint.contains(":limit"), "{shown:#?}");
    assert_eq!(
        violations[1].path, "PutItem.ExpressionAttributeValues.:max",
        "{shown:#?}"
    );
    assert!(violations[1].constraint.contains("unused"), "{shown:#?}");
    // Defined and not used.
    let names = json!({"#pk": "pk", "#n": "n", "#gone": "gone"});
    assert_one(
        &dynamodb(
            "PutItem",
            with(put_item(), "ExpressionAttributeNames", names),
        ),
        "PutItem.ExpressionAttributeNames.#gone",
        "defined but unused in expressions",
    );
    // Inside a transaction, each item with its own maps.
    assert_valid(&dynamodb(
        "TransactWriteItems",
        transact_update("SET #c = #c + :one", json!({":one": {"N": "1"}})),
    ));
    assert_one(
        &dynamodb(
            "TransactWriteItems",
            transact_update(
                "SET #c = #c + :one",
                json!({":one": {"N": "1"}, ":max": {"N": "3"}}),
            ),
        ),
        "TransactWriteItems.TransactItems[1].Update.ExpressionAttributeValues.:max",
        "defined but unused",
    );
    assert_one(
        &dynamodb(
            "TransactWriteItems",
            transact_update(
                "SET #c = #c + :one, #d = :max",
                json!({":one": {"N": "1"}, ":max": {"N": "3"}}),
            ),
        ),
        "TransactWriteItems.TransactItems[1].Update.UpdateExpression",
        "uses #d, which ExpressionAttributeNames does not define",
    );
    // A map with nothing to be used for.
    let query = json!({
        "TableName": "onboard-state",
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "a"}},
        "ExpressionAttributeNames": {},
    });
    assert_one(
        &dynamodb("Query", query),
        "Query.ExpressionAttributeNames",
        "must not be empty",
    );
}

#[test]
fn a_password_is_never_printed() {
    const SECRET: &str = "Hunter2 Secret!";
    let everywhere = |violations: &[Violation]| {
        for v in violations {
            assert!(!format!("{v} {v:?}").contains("Hunter2"), "{v:?}");
        }
        assert!(!model::aws_message(violations).contains("Hunter2"));
    };
    // A violation of the password itself: it has a space, which `[\S]+` refuses.
    let violations = cognito(
        "AdminCreateUser",
        with(create_user(), "TemporaryPassword", json!(SECRET)),
    );
    assert_one(
        &violations,
        "AdminCreateUser.TemporaryPassword",
        "does not fully match pattern",
    );
    assert_eq!(violations[0].value, None);
    everywhere(&violations);
    // A sibling's violation while a password is present: the sibling's value is shown.
    let mut input = with(create_user(), "TemporaryPassword", json!("Hunter2!"));
    input["Username"] = json!("a b");
    let violations = cognito("AdminCreateUser", input);
    assert_one(&violations, "AdminCreateUser.Username", "pattern");
    assert!(
        violations[0].to_string().contains("\"a b\""),
        "{}",
        violations[0]
    );
    everywhere(&violations);
    // Under a map key that names a password, and a password member the operation lacks.
    let challenge = json!({
        "UserPoolId": POOL,
        "ClientId": "abc123",
        "ChallengeName": "NEW_PASSWORD_REQUIRED",
        "ChallengeResponses": {"USERNAME": "alice", "NEW_PASSWORD": {"value": SECRET}},
        "Password": SECRET,
    });
    let violations = cognito("AdminRespondToAuthChallenge", challenge);
    let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "AdminRespondToAuthChallenge.ChallengeResponses.NEW_PASSWORD",
            "AdminRespondToAuthChallenge.Password",
        ]
    );
    everywhere(&violations);
    // The query protocol too.
    let checked = validate_request(
        "/",
        None,
        b"Action=GetSendQuota&Version=2010-12-01&Password=Hunter2",
    )
    .unwrap();
    assert_one(
        &checked.violations,
        "GetSendQuota.Password",
        "unknown member",
    );
    everywhere(&checked.violations);
}

/// SES v2 speaks REST: its operation is its method and path against the model's
/// `requestUri`s, and its input the path's labels (percent-decoded, `+` kept), the query
/// string's members (typed by their shapes) and the body's, checked like any other input.
#[test]
fn rest_requests_are_routed_by_method_and_path_and_checked_whole() {
    let get = rest_request(
        "GET",
        "/v2/email/suppression/addresses/a%2Bb%40example.jp",
        None,
        b"",
    )
    .expect("an SES v2 route");
    assert_eq!(
        (get.service, get.operation.as_str()),
        (Service::SesV2, "GetSuppressedDestination")
    );
    assert_eq!(get.input, json!({"EmailAddress": "a+b@example.jp"}));
    assert_valid(&get.check().violations);
    let tenant = rest_request(
        "GET",
        "/v2/email/suppression/addresses/a%40example.jp",
        Some("TenantName="),
        b"",
    )
    .unwrap();
    assert_one(
        &tenant.check().violations,
        "GetSuppressedDestination.TenantName",
        "< min 1",
    );
    let listed = rest_request(
        "GET",
        "/v2/email/suppression/addresses",
        Some("Reason=BOUNCE&Reason=COMPLAINT&PageSize=many"),
        b"",
    )
    .unwrap();
    assert_eq!(listed.operation, "ListSuppressedDestinations");
    assert_eq!(listed.input["Reasons"], json!(["BOUNCE", "COMPLAINT"]));
    assert_one(
        &listed.check().violations,
        "ListSuppressedDestinations.PageSize",
        "expected an integer",
    );
    let paged = rest_request(
        "GET",
        "/v2/email/suppression/addresses",
        Some("PageSize=20"),
        b"",
    )
    .unwrap();
    assert_eq!(paged.input, json!({"PageSize": 20}));
    assert_valid(&paged.check().violations);
    let deleted = rest_request(
        "DELETE",
        "/v2/email/suppression/addresses/a%40example.jp",
        None,
        b"",
    )
    .unwrap();
    assert_eq!(deleted.operation, "DeleteSuppressedDestination");
    let put = rest_request(
        "PUT",
        "/v2/email/suppression/addresses",
        None,
        br#"{"EmailAddress":"a@example.jp","Reason":"SPAM"}"#,
    )
    .unwrap();
    assert_eq!(put.operation, "PutSuppressedDestination");
    assert_one(
        &put.check().violations,
        "PutSuppressedDestination.Reason",
        "enum",
    );
    // A JSON protocol's `POST /`, moto's own endpoints and unknown paths are not SES v2's.
    assert_eq!(rest_request("POST", "/", None, b"{}"), None);
    assert_eq!(rest_request("POST", "/moto-api/reset", None, b""), None);
    assert_eq!(
        rest_request("GET", "/v2/email/no-such-thing/x/y/z", None, b""),
        None
    );
}

#[test]
fn requests_are_routed_to_their_service_by_target_or_form() {
    let cognito = validate_request(
        "/",
        Some("AWSCognitoIdentityProviderService.ListUsers"),
        br#"{"UserPoolId":"eu-west-1_Abc123","Limit":61}"#,
    )
    .unwrap();
    assert_eq!(cognito.service, Service::CognitoIdp);
    assert_one(&cognito.violations, "ListUsers.Limit", "61 > max 60");
    let dynamo = validate_request(
        "/",
        Some("DynamoDB_20120810.DescribeTable"),
        br#"{"TableName":"onboard-state"}"#,
    )
    .unwrap();
    assert_eq!(
        (dynamo.service, dynamo.violations),
        (Service::DynamoDb, vec![])
    );
    let broken = validate_request("/", Some("DynamoDB_20120810.DescribeTable"), b"{").unwrap();
    assert_one(&broken.violations, "DescribeTable", "not JSON");
    let ses = validate_request("/", None, b"Action=GetSendQuota&Version=2010-12-01").unwrap();
    assert_eq!(
        (ses.service, ses.operation.as_str()),
        (Service::Ses, "GetSendQuota")
    );
    assert_valid(&ses.violations);
    let ses = validate_request(
        "/",
        None,
        b"Action=GetSendQuota&Version=2010-12-01&MaxItems=3",
    )
    .unwrap();
    assert_one(&ses.violations, "GetSendQuota.MaxItems", "unknown member");
    let ses = validate_request("/", None, b"Action=GetSendQuotas&Version=2010-12-01").unwrap();
    assert_one(&ses.violations, "GetSendQuotas", "unknown operation");
    // Not validated: moto's own endpoints, other services.
    assert_eq!(validate_request("/moto-api/reset", None, b""), None);
    assert_eq!(
        validate_request(
            "/",
            Some("AWSSecurityTokenServiceV20110615.GetCallerIdentity"),
            b"{}"
        ),
        None
    );
    assert_eq!(
        validate_request("/", None, b"Action=GetCallerIdentity&Version=2011-06-15"),
        None
    );
}

fn dynamodb_client(rt: &tokio::runtime::Runtime, endpoint: &str) -> aws_sdk_dynamodb::Client {
    rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&config)
    })
}

#[test]
fn an_invalid_request_is_refused_as_aws_would_and_never_reaches_moto() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use cip::error::ProvideErrorMetadata;

    let mut env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let proxy = env.proxy(|c| c.expect_invalid_requests());
    let client = sdk_client(&env.rt, &proxy.url());
    // The error's code and message, or `None` if moto answered.
    let list = |limit: i32| {
        env.rt
            .block_on(
                client
                    .list_users()
                    .user_pool_id(&pool.id)
                    .limit(limit)
                    .send(),
            )
            .err()
            .map(|e| {
                let code = e.code().map(str::to_owned);
                (code, e.message().unwrap_or_default().to_owned())
            })
    };
    let (code, message) = list(61).expect("Cognito refuses a Limit over 60");
    assert_eq!(code.as_deref(), Some("InvalidParameterException"));
    assert!(
        message.contains("ListUsers.Limit") && message.contains("61 > max 60"),
        "{message}"
    );
    assert_eq!(list(60), None, "a Limit of 60 is fine");
    let stats = proxy.stats();
    assert_eq!(stats.received("ListUsers"), 2);
    assert_eq!(stats.invalid("ListUsers"), 1);
    assert_eq!(
        stats.forwarded("ListUsers"),
        1,
        "moto saw only the valid one"
    );
    let violations = proxy.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].path, "ListUsers.Limit");
    assert_eq!(violations[0].operation, "ListUsers");

    // DynamoDB through the same proxy: a value defined and never used.
    let dynamo = dynamodb_client(&env.rt, &proxy.url());
    let refused = env
        .rt
        .block_on(
            dynamo
                .put_item()
                .table_name("no-such-table")
                .item("pk", AttributeValue::S("a".into()))
                .expression_attribute_values(":unused", AttributeValue::N("1".into()))
                .send(),
        )
        .expect_err("DynamoDB refuses an unused expression value");
    assert_eq!(refused.code(), Some("ValidationException"));
    assert_eq!(proxy.stats().forwarded("PutItem"), 0);
    assert_eq!(proxy.violations().len(), 2);

    // Straight to moto's front proxy, which validates too.
    env.moto.front().expect_invalid_requests();
    let direct = sdk_client(&env.rt, &env.moto.url());
    let refused = env
        .rt
        .block_on(direct.list_users().user_pool_id(&pool.id).limit(100).send())
        .expect_err("refused by the front proxy");
    assert_eq!(refused.code(), Some("InvalidParameterException"));
    let front = env.moto.front().violations();
    assert_eq!(front.len(), 1, "{front:?}");
    assert_eq!(front[0].path, "ListUsers.Limit");
    assert_eq!(env.moto.front().stats().forwarded("ListUsers"), 0);
}

#[test]
fn an_unexpected_violation_fails_the_test_when_the_proxy_is_dropped() {
    let env = TestEnv::new();
    let proxy = proxy::Proxy::start_blocking(proxy::ProxyConfig::new(env.moto.addr()))
        .expect("start the proxy");
    let client = sdk_client(&env.rt, &proxy.url());
    let sent = env
        .rt
        .block_on(client.list_users().user_pool_id(POOL).limit(61).send());
    assert!(sent.is_err());
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(proxy)));
    let panic = dropped.expect_err("dropping the proxy panics over the violation");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("ListUsers.Limit: "), "{message}");
    assert!(message.contains("61 > max 60"), "{message}");
    assert!(message.contains("expect_invalid_requests"), "{message}");
}
