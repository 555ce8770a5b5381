//! Checks requests against AWS's own API models — botocore's `service-2.json.gz` for cognito-idp,
//! dynamodb and ses, read from the venv's installed botocore (never a copy) — because moto accepts
//! requests that the real services refuse. It owns loading the models, translating their Java
//! regexes, and the checks; it must not know about sockets, quotas or faults (that is
//! `proxy.rs`), and it must never put the value of a member whose path names a password into a
//! [`Violation`].
//!
//! What is checked, for an operation's input shape and recursively:
//! - the operation exists; required members are present; no member is unknown;
//! - each value has its shape's type (string, boolean, integer/long, float/double, timestamp,
//!   blob, list, map, structure, union), and meets `min`/`max` (string length in code points,
//!   list items, map entries, numeric ranges), `enum`, and `pattern` as a full match;
//! - Cognito `ListUsers.Filter` follows Cognito's one-attribute filter grammar;
//! - DynamoDB: every `#name`/`:value` in a structure's expressions is defined in its
//!   `ExpressionAttributeNames`/`ExpressionAttributeValues`, and every one defined is used.
//!
//! Entry points: [`validate_request`] for an HTTP request of the JSON or query protocols, and
//! [`rest_request`] for one of the REST protocol (SES v2: the operation found by the method and
//! the path against the model's `requestUri`s, its input gathered from the path's labels, the
//! query string and the JSON body) (what the proxy calls), or
//! [`model`]`(Service::…).`[`validate`](Model::validate) for one operation's JSON input.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The services the tool talks to, each with the model its requests are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Cognito user pools: awsJson1.1, `X-Amz-Target: AWSCognitoIdentityProviderService.Op`.
    CognitoIdp,
    /// DynamoDB: awsJson1.0, `X-Amz-Target: DynamoDB_20120810.Op`.
    DynamoDb,
    /// SES (v1): awsQuery, `Action=Op&Version=2010-12-01` in a form body.
    Ses,
    /// SES v2 (restJson1): the operation is the method and path (`GET
    /// /v2/email/suppression/addresses/{EmailAddress}`); also what samples ask of it (the
    /// reminder's mail).
    SesV2,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::CognitoIdp,
        Service::DynamoDb,
        Service::Ses,
        Service::SesV2,
    ];

    /// botocore's directory for the service's model, under `botocore/data`.
    fn model_dir(self) -> &'static str {
        match self {
            Service::CognitoIdp => "cognito-idp/2016-04-18",
            Service::DynamoDb => "dynamodb/2012-08-10",
            Service::Ses => "ses/2010-12-01",
            Service::SesV2 => "sesv2/2019-09-27",
        }
    }

    /// The error code the service answers a request that fails validation with.
    pub fn error_code(self) -> &'static str {
        match self {
            Service::CognitoIdp => "InvalidParameterException",
            Service::DynamoDb => "ValidationException",
            Service::Ses => "ValidationError",
            Service::SesV2 => "BadRequestException",
        }
    }

    /// The service and operation an `X-Amz-Target` names, if it is one of the JSON services here.
    pub fn from_target(target: &str) -> Option<(Service, &str)> {
        let (prefix, operation) = target.split_once('.')?;
        match prefix {
            "AWSCognitoIdentityProviderService" => Some((Service::CognitoIdp, operation)),
            "DynamoDB_20120810" => Some((Service::DynamoDb, operation)),
            _ => None,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::CognitoIdp => "cognito-idp",
            Service::DynamoDb => "dynamodb",
            Service::Ses => "ses",
            Service::SesV2 => "sesv2",
        })
    }
}

/// One way a request breaks its service's model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub service: Service,
    /// The operation, e.g. `AdminCreateUser`.
    pub operation: String,
    /// Where, starting with the operation: `AdminCreateUser.UserAttributes[2].Value`; a map
    /// entry is `.key` (`TransactWriteItems.TransactItems[0].Put.Item.pk`).
    pub path: String,
    /// What is wrong: `length 160 > max 128`, `required member missing`, ...
    pub constraint: String,
    /// The offending value, shortened; always `None` when a member or map key on the path
    /// contains "password" (any case), so that a violation can be printed anywhere.
    pub value: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.constraint)?;
        if let Some(value) = &self.value {
            write!(f, "; value {value}")?;
        }
        Ok(())
    }
}

/// The message AWS would send with its 400, in AWS's style:
/// `1 validation error detected: Value at 'ListUsers.Limit' failed to satisfy constraint: 61 > max 60`.
/// Values are left out, as the client may print the message.
pub fn aws_message(violations: &[Violation]) -> String {
    let details: Vec<String> = violations
        .iter()
        .map(|v| {
            format!(
                "Value at '{}' failed to satisfy constraint: {}",
                v.path, v.constraint
            )
        })
        .collect();
    format!(
        "{} validation error{} detected: {}",
        violations.len(),
        if violations.len() == 1 { "" } else { "s" },
        details.join("; ")
    )
}

/// What [`validate_request`] made of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub service: Service,
    pub operation: String,
    /// Empty when the request is valid.
    pub violations: Vec<Violation>,
}

/// Checks one HTTP request, knowing the service from `X-Amz-Target` (JSON protocols) or from
/// the form body's `Version` (SES's query protocol). `None` when it is none of the three
/// services (moto's `/moto-api/...`, anything else): such a request is not validated.
pub fn validate_request(path: &str, target: Option<&str>, body: &[u8]) -> Option<Checked> {
    if path.starts_with("/moto-api") {
        return None;
    }
    if let Some(target) = target {
        let (service, operation) = Service::from_target(target)?;
        let violations = match serde_json::from_slice::<Value>(body) {
            Ok(input) => model(service).validate(operation, &input),
            // The SDKs send `{}` for an empty input; AWS refuses an empty or broken body.
            Err(e) => vec![Violation {
                service,
                operation: operation.to_owned(),
                path: operation.to_owned(),
                constraint: format!("request body is not JSON ({e})"),
                value: None,
            }],
        };
        return Some(Checked {
            service,
            operation: operation.to_owned(),
            violations,
        });
    }
    let form = std::str::from_utf8(body).ok()?;
    let params = parse_form(form);
    let ses = model(Service::Ses);
    let version = params.iter().find(|(k, _)| k == "Version").map(|(_, v)| v);
    let action = params.iter().find(|(k, _)| k == "Action").map(|(_, v)| v);
    let is_ses = match (version, action) {
        (Some(v), _) => *v == ses.api_version,
        (None, Some(a)) => ses.operations.contains_key(a.as_str()),
        (None, None) => false,
    };
    if !is_ses {
        return None;
    }
    let violations = ses.validate_query(&params);
    Some(Checked {
        service: Service::Ses,
        operation: action.cloned().unwrap_or_default(),
        violations,
    })
}

/// A request of a REST protocol, routed to its operation by its method and path.
#[derive(Clone, Debug, PartialEq)]
pub struct RestRequest {
    pub service: Service,
    pub operation: String,
    /// The operation's input as one JSON object: the path's labels, the query string's
    /// members and the body's, each under its member name.
    pub input: Value,
}

impl RestRequest {
    /// The request checked against its operation's input shape.
    pub fn check(&self) -> Checked {
        Checked {
            service: self.service,
            operation: self.operation.clone(),
            violations: model(self.service).validate(&self.operation, &self.input),
        }
    }
}

/// The REST services' requests: which operation `method` and `path` name (`None`: none of
/// theirs, such as moto's own endpoints or a JSON protocol's `POST /`), and its input.
pub fn rest_request(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Option<RestRequest> {
    if !path.starts_with("/v2/") {
        return None;
    }
    let service = Service::SesV2;
    let m = model(service);
    let (operation, labels) = m.route(method, path)?;
    let mut input = Map::new();
    if !body.is_empty() {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(members)) => input.extend(members),
            // A body that is not an object is checked as the input itself, and refused.
            Ok(other) => {
                return Some(RestRequest {
                    service,
                    operation,
                    input: other,
                });
            }
            Err(_) => {
                let broken = Value::String(String::from_utf8_lossy(body).into_owned());
                return Some(RestRequest {
                    service,
                    operation,
                    input: broken,
                });
            }
        }
    }
    let params = parse_form(query.unwrap_or_default());
    for (member, shape, location, name) in m.located(&operation) {
        let value = match location {
            Location::Uri => labels.get(name).map(|v| Value::String(v.clone())),
            Location::Query => m.query_member(shape, &params, name),
        };
        if let Some(value) = value {
            input.insert(member.to_owned(), value);
        }
    }
    Some(RestRequest {
        service,
        operation,
        input: Value::Object(input),
    })
}

/// `application/x-www-form-urlencoded` pairs, decoded.
/// A path's labels if its segments fit a `requestUri`'s (`{Label}` one segment, `{Label+}` the
/// rest).
fn match_template(template: &[&str], segments: &[&str]) -> Option<HashMap<String, String>> {
    let mut labels = HashMap::new();
    for (i, t) in template.iter().enumerate() {
        match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            Some(greedy) if greedy.ends_with('+') => {
                let rest = segments.get(i..).filter(|r| !r.is_empty())?.join("/");
                labels.insert(greedy.trim_end_matches('+').to_owned(), path_decode(&rest));
                return Some(labels);
            }
            Some(label) => {
                let segment = segments.get(i).filter(|s| !s.is_empty())?;
                labels.insert(label.to_owned(), path_decode(segment));
            }
            None if segments.get(i) == Some(t) => {}
            None => return None,
        }
    }
    (segments.len() == template.len()).then_some(labels)
}

/// A path segment decoded: `%XX` only (a `+` in a path is itself, not a space).
fn path_decode(segment: &str) -> String {
    percent_decode(&segment.replace('+', "%2B"))
}

fn parse_form(form: &str) -> Vec<(String, String)> {
    form.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The service's model, loaded from the venv's botocore the first time it is asked for.
///
/// # Panics
/// If the venv or its botocore is missing (`make venv`), or the model cannot be read.
pub fn model(service: Service) -> &'static Model {
    static COGNITO: OnceLock<Model> = OnceLock::new();
    static DYNAMODB: OnceLock<Model> = OnceLock::new();
    static SES: OnceLock<Model> = OnceLock::new();
    static SESV2: OnceLock<Model> = OnceLock::new();
    let cell = match service {
        Service::CognitoIdp => &COGNITO,
        Service::DynamoDb => &DYNAMODB,
        Service::Ses => &SES,
        Service::SesV2 => &SESV2,
    };
    cell.get_or_init(|| Model::load(service))
}

/// botocore's data directory in the venv (`.venv/lib/python3*/site-packages/botocore/data`).
pub fn botocore_data() -> PathBuf {
    let lib = super::root().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/botocore/data"))
            .find(|p| p.is_dir())
    });
    found.or_else(from_python).unwrap_or_else(|| {
        panic!(
            "botocore's models are not under {}/python3*/site-packages: run `make venv`",
            lib.display()
        )
    })
}

/// Where the configured python (`MOTO_PYTHON` may point outside `.venv`) has botocore.
fn from_python() -> Option<PathBuf> {
    let out = std::process::Command::new(super::python())
        .args([
            "-c",
            "import botocore, os; print(os.path.dirname(botocore.__file__))",
        ])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()).join("data");
    dir.is_dir().then_some(dir)
}

/// Shapes that Smithy declares as unions but botocore's JSON does not mark `"union": true`.
const UNMARKED_UNIONS: &[(Service, &str)] = &[(Service::DynamoDb, "AttributeValue")];

const EXPRESSIONS: [&str; 5] = [
    "KeyConditionExpression",
    "FilterExpression",
    "ConditionExpression",
    "UpdateExpression",
    "ProjectionExpression",
];

/// The attributes Cognito's `ListUsers` can filter on.
pub const FILTERABLE_ATTRIBUTES: &[&str] = &[
    "username",
    "email",
    "phone_number",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "cognito:user_status",
    "status",
    "sub",
];

/// One service's model, reduced to what validation needs.
pub struct Model {
    pub service: Service,
    pub api_version: String,
    /// Operation name → its input shape (`None`: the operation takes no input).
    operations: HashMap<String, Option<usize>>,
    shapes: Vec<Shape>,
    /// REST protocols: each operation's method and `requestUri` (its path part).
    routes: Vec<(String, String, String)>,
    /// REST protocols: the input members sent outside the body (member, shape, where, name).
    locations: HashMap<usize, Vec<(String, usize, Location, String)>>,
}

/// Where a REST request carries an input member outside its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    /// A `{label}` of the path.
    Uri,
    /// A parameter of the query string.
    Query,
}

struct Shape {
    name: String,
    kind: Kind,
}

enum Kind {
    Structure {
        members: Vec<(String, usize)>,
        required: Vec<String>,
        union: bool,
        /// A Smithy document: any JSON goes.
        document: bool,
        /// DynamoDB: the structure carries expressions or their attribute maps.
        expressions: bool,
    },
    List {
        member: usize,
        min: Option<f64>,
        max: Option<f64>,
    },
    Map {
        key: usize,
        value: usize,
        min: Option<f64>,
        max: Option<f64>,
    },
    String(StringRules),
    Integer {
        min: Option<f64>,
        max: Option<f64>,
    },
    Float {
        min: Option<f64>,
        max: Option<f64>,
    },
    Boolean,
    Timestamp,
    Blob {
        min: Option<f64>,
        max: Option<f64>,
    },
}

struct StringRules {
    min: Option<f64>,
    max: Option<f64>,
    enumeration: Option<Vec<String>>,
    pattern: Option<Pattern>,
}

/// A model pattern, compiled on first use and kept.
struct Pattern {
    java: String,
    compiled: OnceLock<Result<fancy_regex::Regex, String>>,
}

impl Pattern {
    fn regex(&self) -> &Result<fancy_regex::Regex, String> {
        self.compiled.get_or_init(|| compile_pattern(&self.java))
    }
}

impl Model {
    fn load(service: Service) -> Model {
        let path = botocore_data()
            .join(service.model_dir())
            .join("service-2.json.gz");
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e} (run `make venv`)", path.display()));
        let json: Value =
            serde_json::from_reader(std::io::BufReader::new(flate2::read::GzDecoder::new(file)))
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Model::from_json(service, &json)
            .unwrap_or_else(|e| panic!("{}: unexpected model: {e}", path.display()))
    }

    fn from_json(service: Service, json: &Value) -> Result<Model, String> {
        let raw = json
            .get("shapes")
            .and_then(Value::as_object)
            .ok_or("no shapes")?;
        let index: HashMap<&str, usize> = raw
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        let target = |r: Option<&Value>| -> Result<usize, String> {
            let name = r
                .and_then(|r| r.get("shape"))
                .and_then(Value::as_str)
                .ok_or("a reference without a shape")?;
            index
                .get(name)
                .copied()
                .ok_or_else(|| format!("unknown shape {name}"))
        };
        let mut shapes = Vec::with_capacity(raw.len());
        let mut locations: HashMap<usize, Vec<(String, usize, Location, String)>> = HashMap::new();
        for (name, s) in raw {
            if let Some(m) = s.get("members").and_then(Value::as_object) {
                for (member, r) in m {
                    let location = match r.get("location").and_then(Value::as_str) {
                        Some("uri") => Location::Uri,
                        Some("querystring") => Location::Query,
                        _ => continue,
                    };
                    let wire = r
                        .get("locationName")
                        .and_then(Value::as_str)
                        .unwrap_or(member);
                    locations.entry(index[name.as_str()]).or_default().push((
                        member.clone(),
                        target(Some(r))?,
                        location,
                        wire.to_owned(),
                    ));
                }
            }
            let num = |k: &str| s.get(k).and_then(Value::as_f64);
            let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
            let kind = match ty {
                "structure" => {
                    let mut members = Vec::new();
                    if let Some(m) = s.get("members").and_then(Value::as_object) {
                        for (member, r) in m {
                            members.push((member.clone(), target(Some(r))?));
                        }
                    }
                    let required = s
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| {
                            r.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    let expressions = service == Service::DynamoDb
                        && members.iter().any(|(m, _)| {
                            EXPRESSIONS.contains(&m.as_str())
                                || m == "ExpressionAttributeNames"
                                || m == "ExpressionAttributeValues"
                        });
                    Kind::Structure {
                        members,
                        required,
                        union: s.get("union").and_then(Value::as_bool).unwrap_or(false)
                            || UNMARKED_UNIONS.contains(&(service, name.as_str())),
                        document: s.get("document").and_then(Value::as_bool).unwrap_or(false),
                        expressions,
                    }
                }
                "list" => Kind::List {
                    member: target(s.get("member"))?,
                    min: num("min"),
                    max: num("max"),
                },
                "map" => Kind::Map {
                    key: target(s.get("key"))?,
                    value: target(s.get("value"))?,
                    min: num("min"),
                    max: num("max"),
                },
                "string" => Kind::String(StringRules {
                    min: num("min"),
                    max: num("max"),
                    enumeration: s.get("enum").and_then(Value::as_array).map(|e| {
                        e.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    }),
                    pattern: s.get("pattern").and_then(Value::as_str).map(|p| Pattern {
                        java: p.to_owned(),
                        compiled: OnceLock::new(),
                    }),
                }),
                "integer" | "long" => Kind::Integer {
                    min: num("min"),
                    max: num("max"),
                },
                "float" | "double" => Kind::Float {
                    min: num("min"),
                    max: num("max"),
                },
                "boolean" => Kind::Boolean,
                "timestamp" => Kind::Timestamp,
                "blob" => Kind::Blob {
                    min: num("min"),
                    max: num("max"),
                },
                other => return Err(format!("shape {name} has type {other:?}")),
            };
            shapes.push(Shape {
                name: name.clone(),
                kind,
            });
        }
        let mut operations = HashMap::new();
        let mut routes = Vec::new();
        for (name, op) in json
            .get("operations")
            .and_then(Value::as_object)
            .ok_or("no operations")?
        {
            let input = match op.get("input") {
                Some(r) => Some(target(Some(r))?),
                None => None,
            };
            operations.insert(name.clone(), input);
            let http = |k: &str| op.pointer(&format!("/http/{k}")).and_then(Value::as_str);
            if let (Some(method), Some(uri)) = (http("method"), http("requestUri")) {
                let path = uri.split('?').next().unwrap_or(uri);
                routes.push((method.to_owned(), path.to_owned(), name.clone()));
            }
        }
        Ok(Model {
            service,
            api_version: json
                .pointer("/metadata/apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            operations,
            shapes,
            routes,
            locations,
        })
    }

    /// The operation a REST request's `method` and `path` name, with the path's labels
    /// (percent-decoded). Where two match, the one with more literal segments wins.
    fn route(&self, method: &str, path: &str) -> Option<(String, HashMap<String, String>)> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, &str, HashMap<String, String>)> = None;
        for (m, uri, operation) in &self.routes {
            if m != method {
                continue;
            }
            let template: Vec<&str> = uri.trim_start_matches('/').split('/').collect();
            let Some(labels) = match_template(&template, &segments) else {
                continue;
            };
            let literal = template.iter().filter(|t| !t.starts_with('{')).count();
            if best.as_ref().is_none_or(|(n, _, _)| literal > *n) {
                best = Some((literal, operation, labels));
            }
        }
        best.map(|(_, operation, labels)| (operation.to_owned(), labels))
    }

    /// The input members of `operation` that a REST request carries outside its body.
    fn located(&self, operation: &str) -> Vec<(&str, usize, Location, &str)> {
        self.operations
            .get(operation)
            .copied()
            .flatten()
            .and_then(|shape| self.locations.get(&shape))
            .map(|members| {
                members
                    .iter()
                    .map(|(m, shape, l, wire)| (m.as_str(), *shape, *l, wire.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A query string member as its shape reads it: a list of every value given, a number, a
    /// boolean, or the text.
    fn query_member(&self, shape: usize, params: &[(String, String)], name: &str) -> Option<Value> {
        let mut values = params.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let typed = |kind: &Kind, v: &String| match kind {
            Kind::Integer { .. } | Kind::Float { .. } => v
                .parse::<serde_json::Number>()
                .map(Value::Number)
                .unwrap_or_else(|_| Value::String(v.clone())),
            Kind::Boolean => match v.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(v.clone()),
            },
            _ => Value::String(v.clone()),
        };
        match &self.shapes[shape].kind {
            Kind::List { member, .. } => {
                let items: Vec<Value> = values
                    .map(|v| typed(&self.shapes[*member].kind, v))
                    .collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            kind => values.next().map(|v| typed(kind, v)),
        }
    }

    /// Whether the model has `operation`.
    pub fn has_operation(&self, operation: &str) -> bool {
        self.operations.contains_key(operation)
    }

    /// Every `(shape name, Java pattern)` in the model.
    pub fn patterns(&self) -> Vec<(&str, &str)> {
        self.shapes
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::String(StringRules {
                    pattern: Some(p), ..
                }) => Some((s.name.as_str(), p.java.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The violations of `input` (an awsJson body) for `operation`; empty when it is valid.
    pub fn validate(&self, operation: &str, input: &Value) -> Vec<Violation> {
        let mut walk = Walk {
            model: self,
            operation,
            out: Vec::new(),
        };
        let mut path = operation.to_owned();
        match self.operations.get(operation) {
            None => walk.push(&path, "unknown operation".to_owned(), None),
            Some(Some(shape)) => walk.value(*shape, input, &mut path, false),
            Some(None) => match input.as_object() {
                Some(o) => {
                    for key in o.keys() {
                        let at = format!("{path}.{key}");
                        walk.push(&at, "unknown member".to_owned(), None);
                    }
                }
                None => walk.push(&path, "expected a JSON object".to_owned(), None),
            },
        }
        if self.service == Service::CognitoIdp
            && operation == "ListUsers"
            && let Some(filter @ Value::String(text)) = input.get("Filter")
            && let Err(why) = check_list_users_filter(text)
        {
            walk.push(&format!("{operation}.Filter"), why, Some(filter));
        }
        walk.out
    }

    /// The violations of an awsQuery request (`Action`, `Version` and the parameters). Only
    /// the top-level parameter names are checked against the input shape: the tool sends no
    /// nested query parameters, so flattening them is not needed.
    pub fn validate_query(&self, params: &[(String, String)]) -> Vec<Violation> {
        let action = params
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let mut walk = Walk {
            model: self,
            operation: action,
            out: Vec::new(),
        };
        if action.is_empty() {
            walk.push("Action", "required parameter missing".to_owned(), None);
            return walk.out;
        }
        let Some(input) = self.operations.get(action) else {
            walk.push(action, "unknown operation".to_owned(), None);
            return walk.out;
        };
        match params.iter().find(|(k, _)| k == "Version") {
            Some((_, v)) if *v == self.api_version => {}
            Some((_, v)) => walk.push(
                &format!("{action}.Version"),
                format!("not the API version {}", self.api_version),
                Some(&Value::String(v.clone())),
            ),
            None => walk.push(
                &format!("{action}.Version"),
                "required parameter missing".to_owned(),
                None,
            ),
        }
        let members: &[(String, usize)] = match input.map(|i| &self.shapes[i].kind) {
            Some(Kind::Structure { members, .. }) => members,
            _ => &[],
        };
        for (key, value) in params {
            if key == "Action" || key == "Version" {
                continue;
            }
            let top = key.split('.').next().unwrap_or(key);
            if !members.iter().any(|(m, _)| m == top) {
                let at = format!("{action}.{key}");
                let secret = is_secret(key);
                walk.push(
                    &at,
                    "unknown member".to_owned(),
                    (!secret).then(|| Value::String(value.clone())).as_ref(),
                );
            }
        }
        if let Some(Kind::Structure { required, .. }) = input.map(|i| &self.shapes[i].kind) {
            for r in required {
                let present = params.iter().any(|(k, _)| {
                    k == r
                        || k.strip_prefix(r.as_str())
                            .is_some_and(|t| t.starts_with('.'))
                });
                if !present {
                    walk.push(
                        &format!("{action}.{r}"),
                        "required member missing".to_owned(),
                        None,
                    );
                }
            }
        }
        walk.out
    }
}

/// Whether a member name or map key names a password, whose value must never be shown.
fn is_secret(segment: &str) -> bool {
    // Called for every member of every request: no allocation.
    segment
        .as_bytes()
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"password"))
}

/// A value as a violation shows it: a string quoted, anything else as compact JSON, cut to
/// about 60 characters.
fn show(value: &Value) -> String {
    const LIMIT: usize = 60;
    let text = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() <= LIMIT {
        text
    } else {
        let mut cut: String = text.chars().take(LIMIT).collect();
        cut.push('…');
        cut
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A bound as the model gives it, without a needless `.0`.
fn bound(b: f64) -> String {
    if b.fract() == 0.0 && b.abs() < 1e15 {
        format!("{}", b as i64)
    } else {
        b.to_string()
    }
}

/// `what N < min M` / `what N > max M`, if `n` is out of bounds.
fn out_of_bounds(what: &str, n: f64, min: Option<f64>, max: Option<f64>) -> Option<String> {
    let shown = bound(n);
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what} ")
    };
    match (min, max) {
        (Some(min), _) if n < min => Some(format!("{what}{shown} < min {}", bound(min))),
        (_, Some(max)) if n > max => Some(format!("{what}{shown} > max {}", bound(max))),
        _ => None,
    }
}

struct Walk<'a> {
    model: &'a Model,
    operation: &'a str,
    out: Vec<Violation>,
}

impl Walk<'_> {
    fn push(&mut self, path: &str, constraint: String, value: Option<&Value>) {
        self.out.push(Violation {
            service: self.model.service,
            operation: self.operation.to_owned(),
            path: path.to_owned(),
            constraint,
            value: value.map(show),
        });
    }

    /// Checks `v` against `shape`. `secret`: a member or key on the path names a password, so
    /// no value may be shown from here down.
    fn value(&mut self, shape: usize, v: &Value, path: &mut String, secret: bool) {
        let shown = |v| (!secret).then_some(v);
        match &self.model.shapes[shape].kind {
            Kind::Structure {
                members,
                required,
                union,
                document,
                expressions,
            } => {
                if *document {
                    return;
                }
                let Some(obj) = v.as_object() else {
                    let c = format!("expected a structure (JSON object), got {}", json_kind(v));
                    return self.push(path, c, shown(v));
                };
                let len = path.len();
                for (key, member_value) in obj {
                    path.push('.');
                    path.push_str(key);
                    let secret = secret || is_secret(key);
                    match members.iter().find(|(m, _)| m == key) {
                        None => {
                            let value = (!secret).then_some(member_value);
                            self.push(path, "unknown member".to_owned(), value);
                        }
                        // A null member is an absent one, as AWS's JSON protocols read it.
                        Some(_) if member_value.is_null() => {}
                        Some((_, member_shape)) => {
                            self.value(*member_shape, member_value, path, secret);
                        }
                    }
                    path.truncate(len);
                }
                for r in required {
                    if obj.get(r).is_none_or(Value::is_null) {
                        let at = format!("{path}.{r}");
                        self.push(&at, "required member missing".to_owned(), None);
                    }
                }
                if *union {
                    let set: Vec<&str> = obj
                        .iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, _)| k.as_str())
                        .collect();
                    if set.len() != 1 {
                        let c = format!(
                            "a union must have exactly one member set, has {} ({})",
                            set.len(),
                            set.join(", ")
                        );
                        self.push(path, c, None);
                    }
                }
                if *expressions {
                    self.expression_tokens(obj, path);
                }
            }
            Kind::List { member, min, max } => {
                let Some(items) = v.as_array() else {
                    let c = format!("expected a list, got {}", json_kind(v));
                    return self.push(path, c, shown(v));
                };
                if let Some(c) = out_of_bounds("items", items.len() as f64, *min, *max) {
                    self.push(path, c, None);
                }
                let len = path.len();
                for (i, item) in items.iter().enumerate() {
                    use std::fmt::Write as _;
                    let _ = write!(path, "[{i}]");
                    self.value(*member, item, path, secret);
                    path.truncate(len);
                }
            }
            Kind::Map {
                key,
                value,
                min,
                max,
            } => {
                let Some(entries) = v.as_object() else {
                    let c = format!("expected a map (JSON object), got {}", json_kind(v));
                    return self.push(path, c, shown(v));
                };
                if let Some(c) = out_of_bounds("entries", entries.len() as f64, *min, *max) {
                    self.push(path, c, None);
                }
                let len = path.len();
                for (k, entry) in entries {
                    path.push('.');
                    path.push_str(k);
                    let secret = secret || is_secret(k);
                    if let Kind::String(rules) = &self.model.shapes[*key].kind {
                        for c in string_violations(rules, k) {
                            // The key is part of the path already, so it is never a secret.
                            self.push(path, format!("key {c}"), None);
                        }
                    }
                    if entry.is_null() {
                        self.push(path, "null map value".to_owned(), None);
                    } else {
                        self.value(*value, entry, path, secret);
                    }
                    path.truncate(len);
                }
            }
            Kind::String(rules) => match v.as_str() {
                Some(s) => {
                    for c in string_violations(rules, s) {
                        self.push(path, c, shown(v));
                    }
                }
                None => {
                    let c = format!("expected a string, got {}", json_kind(v));
                    self.push(path, c, shown(v));
                }
            },
            Kind::Integer { min, max } => {
                if !(v.is_i64() || v.is_u64()) {
                    let c = format!("expected an integer, got {}", json_kind(v));
                    return self.push(path, c, shown(v));
                }
                let n = v.as_f64().unwrap_or(0.0);
                if let Some(c) = out_of_bounds("", n, *min, *max) {
                    self.push(path, c, shown(v));
                }
            }
            Kind::Float { min, max } => {
                let n = match v {
                    Value::Number(n) => n.as_f64(),
                    // How AWS's JSON protocols spell the numbers JSON lacks.
                    Value::String(s) if ["NaN", "Infinity", "-Infinity"].contains(&s.as_str()) => {
                        None
                    }
                    _ => {
                        let c = format!("expected a number, got {}", json_kind(v));
                        return self.push(path, c, shown(v));
                    }
                };
                if let Some(c) = n.and_then(|n| out_of_bounds("", n, *min, *max)) {
                    self.push(path, c, shown(v));
                }
            }
            Kind::Boolean => {
                if !v.is_boolean() {
                    let c = format!("expected a boolean, got {}", json_kind(v));
                    self.push(path, c, shown(v));
                }
            }
            Kind::Timestamp => {
                if !(v.is_number() || v.is_string()) {
                    let c = format!(
                        "expected a timestamp (epoch seconds or a string), got {}",
                        json_kind(v)
                    );
                    self.push(path, c, shown(v));
                }
            }
            Kind::Blob { min, max } => match v.as_str().map(base64_len) {
                Some(Some(n)) => {
                    if let Some(c) = out_of_bounds("length", n as f64, *min, *max) {
                        self.push(path, c, None);
                    }
                }
                Some(None) => self.push(path, "blob is not valid base64".to_owned(), None),
                None => {
                    let c = format!("expected a blob (base64 string), got {}", json_kind(v));
                    self.push(path, c, None);
                }
            },
        }
    }

    /// DynamoDB refuses a `#name` or `:value` used in an expression and not defined, and one
    /// defined and used in no expression of the same request (or transaction item).
    fn expression_tokens(&mut self, obj: &Map<String, Value>, path: &str) {
        let mut used_names: Vec<(&str, &str)> = Vec::new();
        let mut used_values: Vec<(&str, &str)> = Vec::new();
        for expression in EXPRESSIONS {
            if let Some(Value::String(text)) = obj.get(expression) {
                for token in tokens(text) {
                    if token.starts_with('#') {
                        used_names.push((token, expression));
                    } else {
                        used_values.push((token, expression));
                    }
                }
            }
        }
        for (map_name, used) in [
            ("ExpressionAttributeNames", &used_names),
            ("ExpressionAttributeValues", &used_values),
        ] {
            let defined = obj.get(map_name).and_then(Value::as_object);
            let mut missing = BTreeSet::new();
            for (token, expression) in used {
                if !defined.is_some_and(|d| d.contains_key(*token)) && missing.insert(*token) {
                    let at = format!("{path}.{expression}");
                    let c = format!("uses {token}, which {map_name} does not define");
                    self.push(&at, c, None);
                }
            }
            let Some(defined) = defined else { continue };
            if defined.is_empty() {
                let at = format!("{path}.{map_name}");
                self.push(&at, "must not be empty".to_owned(), None);
            }
            for key in defined.keys() {
                if !used.iter().any(|(t, _)| t == key) {
                    let at = format!("{path}.{map_name}.{key}");
                    let c = "defined but unused in expressions".to_owned();
                    self.push(&at, c, None);
                }
            }
        }
    }
}

/// The `#name` and `:value` tokens of a DynamoDB expression (`[#:][A-Za-z0-9_]+`).
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let start = i;
            i += 1;
            if bytes[start] == b'#' || bytes[start] == b':' {
                let end = bytes[i..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .map_or(bytes.len(), |p| i + p);
                if end > i {
                    i = end;
                    return text.get(start..end);
                }
            }
        }
        None
    })
}

/// The decoded length of a base64 string, or `None` if it is not base64.
fn base64_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let padding = bytes.iter().rev().take_while(|b| **b == b'=').count();
    if padding > 2 {
        return None;
    }
    let body = &bytes[..bytes.len() - padding];
    body.iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .then(|| bytes.len() / 4 * 3 - padding)
}

/// A string's violations of its shape: length in code points, enum, then pattern.
fn string_violations(rules: &StringRules, s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if rules.min.is_some() || rules.max.is_some() {
        let length = s.chars().count() as f64;
        if let Some(c) = out_of_bounds("length", length, rules.min, rules.max) {
            out.push(c);
        }
    }
    if let Some(values) = &rules.enumeration
        && !values.iter().any(|v| v == s)
    {
        out.push(format!("not one of enum [{}]", values.join(", ")));
    }
    if let Some(pattern) = &rules.pattern {
        match pattern.regex() {
            Ok(re) => match re.is_match(s) {
                Ok(true) => {}
                Ok(false) => out.push(format!("does not fully match pattern {}", pattern.java)),
                Err(e) => out.push(format!("pattern {} could not run: {e}", pattern.java)),
            },
            Err(e) => out.push(format!("pattern {} does not compile: {e}", pattern.java)),
        }
    }
    out
}

/// Checks a `ListUsers` filter against Cognito's grammar: one `attribute = "value"` or
/// `attribute ^= "value"`, the attribute one Cognito can filter on, the value in double quotes
/// (`\"` inside is a quote). An empty filter lists every user.
pub fn check_list_users_filter(filter: &str) -> Result<(), String> {
    let grammar = "Cognito's filter grammar is attribute = \"value\" or attribute ^= \"value\"";
    let rest = filter.trim_start_matches(' ');
    if rest.is_empty() {
        return Ok(());
    }
    let name_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    let (attribute, rest) = rest.split_at(name_end);
    if attribute.is_empty() {
        return Err(format!("{grammar}: no attribute name"));
    }
    if !FILTERABLE_ATTRIBUTES.contains(&attribute) {
        return Err(format!(
            "{grammar}: {attribute} is not an attribute Cognito can filter on ({})",
            FILTERABLE_ATTRIBUTES.join(", ")
        ));
    }
    let rest = rest.trim_start_matches(' ');
    let rest = if let Some(r) = rest.strip_prefix("^=") {
        r
    } else if let Some(r) = rest.strip_prefix('=') {
        r
    } else {
        return Err(format!("{grammar}: the operator must be = or ^="));
    };
    let rest = rest.trim_start_matches(' ');
    let Some(quoted) = rest.strip_prefix('"') else {
        return Err(format!("{grammar}: the value must be in double quotes"));
    };
    let mut chars = quoted.char_indices();
    let mut closed_at = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => {
                closed_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(closed_at) = closed_at else {
        return Err(format!("{grammar}: the value's closing quote is missing"));
    };
    if !quoted[closed_at + 1..].trim_matches(' ').is_empty() {
        return Err(format!(
            "{grammar}: text after the value (one attribute only, and a quote inside the value is \\\")"
        ));
    }
    Ok(())
}

/// Compiles a model pattern as a full match, translated from Java's regex syntax.
pub fn compile_pattern(java: &str) -> Result<fancy_regex::Regex, String> {
    let translated = java_to_rust(java)?;
    fancy_regex::Regex::new(&format!("^(?:{translated})$"))
        .map_err(|e| format!("{e} (translated to {translated})"))
}

// Java's \s, as ASCII (Java's \w, \s, \d are ASCII unless UNICODE_CHARACTER_CLASS is set).
const SPACE: &str = r"\t\n\x0B\x0C\r ";
const WORD: &str = "0-9A-Za-z_";

/// Java's POSIX `\p{...}` classes, which are ASCII; the rest (`\p{L}`, ...) mean the same in Rust.
fn posix_class(name: &str) -> Option<&'static str> {
    Some(match name {
        "Print" => r"\x20-\x7E",
        "Graph" => r"\x21-\x7E",
        "Lower" => "a-z",
        "Upper" => "A-Z",
        "ASCII" => r"\x00-\x7F",
        "Alpha" => "A-Za-z",
        "Digit" => "0-9",
        "Alnum" => "0-9A-Za-z",
        "Punct" => r"\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E",
        "Blank" => r"\t ",
        "Cntrl" => r"\x00-\x1F\x7F",
        "XDigit" => "0-9A-Fa-f",
        "Space" => SPACE,
        _ => return None,
    })
}

/// One element of a Java character class.
enum ClassItem {
    Char(u32),
    /// Class syntax already in Rust's form (`\p{L}`, a nested class, an ASCII set's ranges).
    Raw(String),
}

/// What a Java escape stands for.
enum Escape {
    Char(u32),
    /// A set: its Rust class body (no brackets) and whether it is negated.
    Set(String, bool),
    /// Anything else (`\b`, a back-reference), passed on as written.
    Verbatim(String),
}

struct Translator<'a> {
    chars: Vec<char>,
    pos: usize,
    java: &'a str,
}

/// Translates a Java regex to fancy-regex syntax: ASCII `\w`/`\s`/`\d`, `\p{Print}` and the other
/// POSIX classes as ASCII ranges, `\uXXXX` as `\x{XXXX}` with surrogate pairs joined into the
/// code point they encode (bare surrogates, which a Rust string cannot hold, dropped), and class
/// members written out so that a `-` Java reads as literal (`[A-Za-z0-9-_]`) stays literal.
pub fn java_to_rust(java: &str) -> Result<String, String> {
    let mut t = Translator {
        chars: java.chars().collect(),
        pos: 0,
        java,
    };
    let mut out = String::new();
    while let Some(c) = t.peek() {
        match c {
            '\\' => match t.escape()? {
                Escape::Char(cp) => {
                    if let Some(c) = char::from_u32(cp) {
                        out.push_str(&literal(c));
                    }
                }
                Escape::Set(body, negated) => {
                    out.push('[');
                    if negated {
                        out.push('^');
                    }
                    out.push_str(&body);
                    out.push(']');
                }
                Escape::Verbatim(v) => out.push_str(&v),
            },
            '[' => out.push_str(&t.class()?),
            _ => {
                out.push(c);
                t.pos += 1;
            }
        }
    }
    Ok(out)
}

/// A literal character, escaped whenever it is not alphanumeric so no syntax can misread it.
fn literal(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        format!(r"\x{{{:X}}}", u32::from(c))
    }
}

fn is_surrogate(cp: u32) -> bool {
    (0xD800..=0xDFFF).contains(&cp)
}

impl Translator<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at {} in {}", self.pos, self.java)
    }

    fn hex(&mut self, digits: usize) -> Result<u32, String> {
        let text: String = self.chars.iter().skip(self.pos).take(digits).collect();
        if text.chars().count() != digits {
            return Err(self.error("short hex escape"));
        }
        self.pos += digits;
        u32::from_str_radix(&text, 16).map_err(|_| self.error("bad hex escape"))
    }

    /// Reads an escape, the cursor on its backslash.
    fn escape(&mut self) -> Result<Escape, String> {
        self.pos += 1;
        let c = self
            .peek()
            .ok_or_else(|| self.error("trailing backslash"))?;
        self.pos += 1;
        Ok(match c {
            'w' => Escape::Set(WORD.to_owned(), false),
            'W' => Escape::Set(WORD.to_owned(), true),
            's' => Escape::Set(SPACE.to_owned(), false),
            'S' => Escape::Set(SPACE.to_owned(), true),
            'd' => Escape::Set("0-9".to_owned(), false),
            'D' => Escape::Set("0-9".to_owned(), true),
            't' => Escape::Char(0x09),
            'n' => Escape::Char(0x0A),
            'r' => Escape::Char(0x0D),
            'f' => Escape::Char(0x0C),
            'a' => Escape::Char(0x07),
            'e' => Escape::Char(0x1B),
            'x' if self.peek() == Some('{') => {
                self.pos += 1;
                let end = self.chars[self.pos..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or_else(|| self.error("unclosed \\x{"))?;
                let cp = self.hex(end)?;
                self.pos += 1;
                Escape::Char(cp)
            }
            'x' => Escape::Char(self.hex(2)?),
            'u' => {
                let cp = self.hex(4)?;
                let low = (0xD800..=0xDBFF).contains(&cp)
                    && self.peek() == Some('\\')
                    && self.peek_at(1) == Some('u');
                if low {
                    let save = self.pos;
                    self.pos += 2;
                    let next = self.hex(4)?;
                    if (0xDC00..=0xDFFF).contains(&next) {
                        return Ok(Escape::Char(
                            0x10000 + ((cp - 0xD800) << 10) + (next - 0xDC00),
                        ));
                    }
                    self.pos = save;
                }
                Escape::Char(cp)
            }
            'p' | 'P' => {
                let name = if self.peek() == Some('{') {
                    let end = self.chars[self.pos..]
                        .iter()
                        .position(|c| *c == '}')
                        .ok_or_else(|| self.error("unclosed \\p{"))?;
                    let name: String = self.chars[self.pos + 1..self.pos + end].iter().collect();
                    self.pos += end + 1;
                    name
                } else {
                    let name = self.peek().ok_or_else(|| self.error("bare \\p"))?;
                    self.pos += 1;
                    name.to_string()
                };
                let name = name.strip_prefix("Is").unwrap_or(&name).to_owned();
                match posix_class(&name) {
                    Some(body) => Escape::Set(body.to_owned(), c == 'P'),
                    None => Escape::Set(format!(r"\{c}{{{name}}}"), false),
                }
            }
            c if c.is_ascii_alphanumeric() => Escape::Verbatim(format!("\\{c}")),
            c => Escape::Char(u32::from(c)),
        })
    }

    /// Reads a class, the cursor on its `[`, and returns it in Rust's syntax.
    fn class(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::from("[");
        if self.peek() == Some('^') {
            out.push('^');
            self.pos += 1;
        }
        let mut items: Vec<ClassItem> = Vec::new();
        loop {
            let c = self.peek().ok_or_else(|| self.error("unclosed class"))?;
            let item = match c {
                ']' => {
                    self.pos += 1;
                    break;
                }
                '[' => ClassItem::Raw(self.class()?),
                '&' if self.peek_at(1) == Some('&') => {
                    self.pos += 2;
                    ClassItem::Raw("&&".to_owned())
                }
                '\\' => match self.escape()? {
                    Escape::Char(cp) => ClassItem::Char(cp),
                    Escape::Set(body, false) => ClassItem::Raw(body),
                    Escape::Set(body, true) => ClassItem::Raw(format!("[^{body}]")),
                    Escape::Verbatim(v) => return Err(self.error(&format!("{v} in a class"))),
                },
                c => {
                    self.pos += 1;
                    ClassItem::Char(u32::from(c))
                }
            };
            // A range is a single character, `-`, and a single character before `]`; any other
            // `-` is literal, as Java reads `[0-9-_]`.
            if let ClassItem::Char(from) = item
                && self.peek() == Some('-')
                && !matches!(self.peek_at(1), Some(']') | Some('[') | None)
            {
                self.pos += 1;
                let to = match self.peek() {
                    Some('\\') => match self.escape()? {
                        Escape::Char(cp) => cp,
                        _ => return Err(self.error("a range ends in a set")),
                    },
                    Some(c) => {
                        self.pos += 1;
                        u32::from(c)
                    }
                    None => return Err(self.error("unclosed class")),
                };
                // A range reaching into the surrogates covers code points a string cannot
                // hold; only its valid part can match.
                let from = if is_surrogate(from) { 0xE000 } else { from };
                let to = if is_surrogate(to) { 0xD7FF } else { to };
                if from <= to {
                    let (Some(a), Some(b)) = (char::from_u32(from), char::from_u32(to)) else {
                        return Err(self.error("bad range"));
                    };
                    items.push(ClassItem::Raw(format!("{}-{}", literal(a), literal(b))));
                }
                continue;
            }
            items.push(item);
        }
        if items.is_empty() {
            // Only surrogates: a class that can match nothing.
            out.push_str(r"\x{0}&&\x{1}");
        }
        for item in items {
            match item {
                ClassItem::Char(cp) => {
                    if let Some(c) = char::from_u32(cp) {
                        out.push_str(&literal(c));
                    }
                }
                ClassItem::Raw(raw) => out.push_str(&raw),
            }
        }
        out.push(']');
        Ok(out)
    }
}
