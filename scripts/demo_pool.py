"""Sets up the demo's user pool in the local emulator, and plays two providers' first sign-in.

Uses boto3 (a real AWS client), never hand-written HTTP. Prints no password.
"""
import argparse
import csv
import secrets
import string

import boto3


def client(endpoint):
    return boto3.client(
        "cognito-idp",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )


def setup(args):
    c = client(args.endpoint)
    pool = c.create_user_pool(
        PoolName="data-providers",
        UsernameAttributes=["email"],
        AutoVerifiedAttributes=["email"],
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 8,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": True,
                "TemporaryPasswordValidityDays": 7,
            }
        },
    )["UserPool"]
    for group in ("providers", "beta"):
        c.create_group(UserPoolId=pool["Id"], GroupName=group)
    app = c.create_user_pool_client(
        UserPoolId=pool["Id"],
        ClientName="hosted-ui",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]
    print(pool["Id"], app["ClientId"])


def new_password():
    symbols = "!#%+-_"
    chars = [secrets.choice(s) for s in (string.ascii_uppercase, string.ascii_lowercase, string.digits, symbols)]
    chars += [secrets.choice(string.ascii_letters + string.digits + symbols) for _ in range(12)]
    secrets.SystemRandom().shuffle(chars)
    return "A" + "".join(chars) + "z"


def first_sign_in(args):
    c = client(args.endpoint)
    with open(args.passwords, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows[: args.count]:
        user = row["username"]
        out = c.admin_initiate_auth(
            UserPoolId=args.pool,
            ClientId=args.client,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": user, "PASSWORD": row["temporary_password"]},
        )
        assert out["ChallengeName"] == "NEW_PASSWORD_REQUIRED", out.get("ChallengeName")
        c.admin_respond_to_auth_challenge(
            UserPoolId=args.pool,
            ClientId=args.client,
            ChallengeName="NEW_PASSWORD_REQUIRED",
            ChallengeResponses={"USERNAME": user, "NEW_PASSWORD": new_password()},
            Session=out["Session"],
        )
        email = c.admin_get_user(UserPoolId=args.pool, Username=user)
        attrs = {a["Name"]: a["Value"] for a in email["UserAttributes"]}
        print(f"  {attrs.get('email')} signed in and set a password: now {email['UserStatus']}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--endpoint", required=True)
    s.set_defaults(fn=setup)
    f = sub.add_parser("first-sign-in")
    f.add_argument("--endpoint", required=True)
    f.add_argument("--pool", required=True)
    f.add_argument("--client", required=True)
    f.add_argument("--passwords", required=True)
    f.add_argument("--count", type=int, default=2)
    f.set_defaults(fn=first_sign_in)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
