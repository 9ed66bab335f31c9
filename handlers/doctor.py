"""What `partnerbot check` says: one line per check, and for each failure what to change where.

The command line speaks English (like the rest of `partnerbot`), naming each place in the consoles by
its Chinese label, the words an admin sees on the screen (应用管理 → 自建 → …). Error codes are the
platforms' own (WeCom: developer.work.weixin.qq.com/document/path/90455; the Official Account's
global return codes), quoted in each line so they can be looked up.
"""
from __future__ import annotations

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"

WECOM_APP = "应用管理 → 自建 → your app"
WECOM_LOOKUP = "https://open.work.weixin.qq.com/devtool/query?e={code}"
OA_BASIC = "设置与开发 → 基本配置"

TEXTS: dict[str, str] = {
    "db.ok": "database {url} is at the newest migration ({head})",
    "db.missing": "the database file of {url} does not exist yet: run `partnerbot migrate`",
    "db.behind": "database {url} is at migration {current}, not {head}: run `partnerbot migrate`",
    "db.down": "cannot use the database {url} ({error}): check [database] url (PARTNERBOT_DATABASE_URL) and that "
               "the server is up",
    "redis.none": "no Redis ([redis] url is empty): fine for one instance; several need one",
    "redis.ok": "Redis answers",
    "redis.down": "Redis does not answer ({error}): check [redis] url (PARTNERBOT_REDIS_URL) and that Redis is up, "
                  "or leave it empty for a single instance",
    "server.public_url.private": "[server] public_base_url is {url}, which WeCom, WeChat and customers cannot "
                                 "reach: set PARTNERBOT_SERVER_PUBLIC_BASE_URL to https://<your host>",
    "server.public_url.port": "[server] public_base_url {url} has port {port}; the Official Account's server URL "
                              "takes only 80 (http) or 443 (https): serve it through a proxy on 443",
    # ----- WeCom: settings and token -----------------------------------------------------------------
    "wecom.missing": "[wecom] {key} is not set: set {env} ({where})",
    "wecom.token.ok": "gettoken works: CorpID {corp_id} and the app's Secret are right",
    "wecom.token.40013": "WeCom says CorpID {corp_id} is no corp (40013): copy 企业ID from 我的企业 → 企业信息 "
                         "into PARTNERBOT_WECOM_CORP_ID",
    "wecom.token.secret": "WeCom refused the Secret ({code} {errmsg}): copy this app's own Secret ({app} → Secret → "
                          "查看, sent to you in WeCom; not the 通讯录 or 客户联系 Secret) into PARTNERBOT_WECOM_SECRET",
    "wecom.token.other": "WeCom refused gettoken ({code} {errmsg}): see " + WECOM_LOOKUP,
    # ----- trusted IP, the app and its visible range -------------------------------------------------
    "wecom.ip.ok": "API calls from this server are accepted (企业可信IP)",
    "wecom.ip.60020": "WeCom refuses API calls from this server's IP {ip} (60020): add it under {app} → "
                      "企业可信IP (needs a 可信域名 or the 接收消息 URL set first)",
    "wecom.agent.301002": "AgentId {agent_id} is not the app whose Secret is configured ({code}): copy AgentId from "
                          "the same app's page ({app}) into PARTNERBOT_WECOM_AGENT_ID",
    "wecom.agent.other": "WeCom refused agent/get for AgentId {agent_id} ({code} {errmsg}): see " + WECOM_LOOKUP,
    "wecom.agent.closed": "the app '{name}' is disabled (已停用): enable it under {app}",
    "wecom.range.ok": "the app '{name}' is visible to {users} member(s), {departments} department(s) and {tags} "
                      "tag(s) (可见范围)",
    "wecom.range.empty": "nobody is in the visible range (可见范围) of '{name}', so nobody can message the bot or "
                         "get its messages: add people or departments under {app} → 可见范围",
    "wecom.range.outside": "{userid} is not in the visible range (可见范围) of '{name}' as far as agent/get and "
                           "user/get show: add them under {app} → 可见范围 (the test message tells for sure)",
    "wecom.range.inside": "{userid} is in the visible range (可见范围) of '{name}'",
    # ----- customer contact (客户联系), which `转发 N` needs ----------------------------------------------
    "wecom.customers.ok": "{count} member(s) may use customer contact (客户联系), so `转发 N` works for them{who}",
    "wecom.customers.you": ", {userid} among them",
    "wecom.customers.none": "nobody may use customer contact (客户联系), so `转发 N` only hands out copies: add "
                            "people under 客户与上下游 → 客户联系 → 权限配置 → 使用范围",
    "wecom.customers.outside": "{userid} may not use customer contact (客户联系), so `转发 N` only hands them a copy: "
                               "add them under 客户与上下游 → 客户联系 → 权限配置 → 使用范围",
    "wecom.customers.48002": "the app may not call customer contact (48002 api forbidden), so `转发 N` only hands out "
                             "copies: add it under 客户与上下游 → 客户联系 → 客户 → API → 可调用接口的应用",
    "wecom.customers.other": "customer contact refused get_follow_user_list ({code} {errmsg}): `转发 N` may not work",
    # ----- the test message --------------------------------------------------------------------------
    "wecom.message.ok": "sent a test message to {userid}: it should be in their WeCom now, from the app '{name}'",
    "wecom.message.skip": "no test message: add --to YOUR_USERID (通讯录 → your name → 账号) to get one",
    "wecom.message.unreached": "WeCom did not deliver the test message to {userid} ({detail}): check the userid "
                               "(通讯录 → 成员 → 账号) and that they are in {app} → 可见范围",
    "wecom.message.other": "WeCom refused the test message to {userid} ({code} {errmsg}): see " + WECOM_LOOKUP,
    "wecom.message.text": "partnerbot check: 这是一条测试消息，收到即说明应用可以给你发消息。"
                          "(A test message: the app can reach you.)",
    "wecom.blocked": "{what} not tried: fix the line above first",
    # ----- callback settings -------------------------------------------------------------------------
    "callback.token.missing": "[{section}] token is not set: set {env} to the Token of {where}",
    "callback.token.format": "[{section}] token is {length} characters with other than letters and digits; the console "
                             "takes 1-32 letters or digits: use its 随机获取 and set {env} to the same",
    "callback.key.missing": "[{section}] encoding_aes_key is not set: set {env} to the EncodingAESKey of {where}",
    "callback.key.format": "[{section}] encoding_aes_key must be 43 letters and digits (base64 of 32 bytes), it is "
                           "{length} characters: copy it again from {where} into {env}",
    "callback.local.ok": "{platform} URL verification works: {how}; our handler answered a signed echostr "
                         "correctly in {ms} ms",
    "callback.local.fail": "our own callback handler refused a {platform} verification signed with the configured "
                           "values (HTTP {status}: {body}): the Token, EncodingAESKey and {id_name} do not fit together",
    "callback.public.ok": "{url} answers {platform}'s URL verification (HTTP 200 in {ms} ms)",
    "callback.public.down": "nothing answers at {url} yet ({error}): normal before `partnerbot serve` runs there; "
                            "{platform} checks it when you press save",
    "callback.public.wrong": "{url} answered {platform}'s URL verification with HTTP {status} ({body}): the server "
                             "there runs with another Token/EncodingAESKey/{id_name}, or the proxy does not pass "
                             "{path} through",
    "callback.public.slow": "{url} answered {platform}'s URL verification in {ms} ms; {platform} gives up after "
                            "{limit_ms} ms: make it answer faster",
    # ----- network -----------------------------------------------------------------------------------
    "net.dns": "cannot resolve {host} ({base}): check this server's DNS, or [{section}] api_base_url",
    "net.connect": "cannot connect to {host} ({error}): let this server make HTTPS calls to {host} "
                   "(firewall, outbound proxy), or check [{section}] api_base_url",
    "net.timeout": "{host} did not answer {api} within {seconds:g} s: check the network path to {host}",
    "net.tls": "TLS with {host} failed ({error}): check this server's clock and CA certificates",
    "net.http": "{host} answered {api} with HTTP {status}, not the platform's JSON: is [{section}] api_base_url "
                "right ({default})? Is a proxy in the way?",
    "net.other": "calling {api} on {host} failed ({error})",
    # ----- the Official Account ----------------------------------------------------------------------
    "oa.skip": "no Official Account configured ([wechat] app_id is empty): nothing to check",
    "oa.missing": "[wechat] secret is not set: set PARTNERBOT_WECHAT_SECRET to the AppSecret (" + OA_BASIC
                  + " → 开发者密码(AppSecret))",
    "oa.token.ok": "Official Account token works: AppID {app_id} and AppSecret are right, and this server's IP "
                   "is on the IP whitelist",
    "oa.token.40013": "WeChat says AppID {app_id} is not valid (40013): copy 开发者ID(AppID) from " + OA_BASIC
                      + " into PARTNERBOT_WECHAT_APP_ID",
    "oa.token.secret": "WeChat refused the AppSecret ({code} {errmsg}): reset or copy 开发者密码(AppSecret) under "
                       + OA_BASIC + " into PARTNERBOT_WECHAT_SECRET",
    "oa.token.ip": "WeChat refuses this server's IP {ip} ({code}): add it under " + OA_BASIC + " → IP白名单",
    "oa.token.other": "WeChat refused the token ({code} {errmsg}): look the code up in the Official Account's "
                      "global return codes",
    "oa.menu.ok": "the Official Account's menu is partnerbot's ({buttons} buttons)",
    "oa.menu.none": "the Official Account has no menu (46003): followers must type commands; "
                    "run `partnerbot wechat menu`",
    "oa.menu.foreign": "the Official Account's menu is not partnerbot's (its buttons do not run the bot's "
                       "commands): run `partnerbot wechat menu` to replace it",
    "oa.menu.48001": "WeChat refuses the menu API (48001 api unauthorized): partnerbot needs a verified service "
                     "account (认证服务号) for its menu and customer-service messages",
    "oa.menu.other": "WeChat refused menu/get ({code} {errmsg})",
    # ----- the summary -------------------------------------------------------------------------------
    "summary.ready": "partnerbot check: {counts}: ready for production",
    "summary.not_ready": "partnerbot check: {counts}: NOT ready, fix the FAIL lines above and run it again",
}

# Where each callback setting is made, and by which environment variable it is given to the bot.
CALLBACK_PLACES = {
    "wecom": ("WeCom", WECOM_APP + " → 接收消息 → 设置API接收", "CorpID"),
    "wechat": ("WeChat", OA_BASIC + " → 服务器配置", "AppID"),
}
HOW_VERIFIED = {
    "wecom": "on save, WeCom GETs {url}?msg_signature=…&timestamp=…&nonce=…&echostr=… and expects the "
             "decrypted echostr back within 1 s",
    "wechat": "on save, WeChat GETs {url}?signature=…&timestamp=…&nonce=…&echostr=… and expects echostr back "
              "within 5 s",
}


def say(text: str, /, **facts: object) -> str:
    return TEXTS[text].format(app=WECOM_APP, **facts)


def counts(statuses: list[str]) -> str:
    parts = [(statuses.count(OK), "ok"), (statuses.count(WARN), "warning(s)"), (statuses.count(FAIL), "failed"),
             (statuses.count(SKIP), "skipped")]
    return ", ".join(f"{n} {label}" for n, label in parts if n) or "nothing checked"
