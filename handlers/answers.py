"""What the bot answers before or instead of a command's handler: no command, a command this role
may not use, bad input, a refusal, strangers, and an apology when processing failed. bot/pipeline
(router, inbox) decides which applies and sends it."""
from __future__ import annotations

from handlers.context import ROLE_NAMES, ArgError, Command, Context, is_chinese, shorten
from handlers.replies import Text
from store.errors import Refusal

APOLOGY = Text("抱歉，处理您的消息时出错了，请稍后再试。\nSorry, something went wrong with your message. Please try again later.")
TEXT_ONLY = Text("我只看得懂文字命令，发送“帮助”查看可用命令。\nI understand text commands only: send help.")
EMPTY = Text("发送“帮助”查看可用命令。\nSend help to see what you can do.")


def bad_input(ctx: Context, err: ArgError, command: Command) -> Text:
    usage = command.help_zh if ctx.lang == "zh" else command.help_en
    return Text(ctx.say(f"{err.en}.\nUsage: {usage}", f"{err.zh}。\n用法：{usage}"))


def sorry(ctx: Context, refusal: Refusal) -> Text:
    return Text(ctx.say(f"Sorry: {refusal.en}.", f"抱歉：{refusal.zh}。"))


def unknown(ctx: Context, word: str, guess: Command | None) -> Text:
    help_word = ctx.say("help", "帮助")
    if guess is None:
        return Text(ctx.say(
            f"I don't know “{shorten(word)}”. Send {help_word} to see what you can do.",
            f"没有“{shorten(word)}”这个命令。发送“{help_word}”查看可用命令。",
        ))
    example = guess.help_zh if ctx.lang == "zh" else guess.help_en
    return Text(ctx.say(
        f"I don't know “{shorten(word)}”. Did you mean: {example}\nSend {help_word} for all commands.",
        f"没有“{shorten(word)}”这个命令。您是想用：{example}\n发送“{help_word}”查看全部命令。",
    ))


def not_for_role(ctx: Context, command: Command) -> Text:
    who_en = " and ".join(ROLE_NAMES[r][0] for r in sorted(command.roles))
    who_zh = "和".join(ROLE_NAMES[r][1] for r in sorted(command.roles))
    return Text(ctx.say(
        f"“{command.name}” is for {who_en} only. Send help to see your commands.",
        f"“{command.name_zh}”仅限{who_zh}使用。发送“帮助”查看您可用的命令。",
    ))


def _in_their_language(line: str, zh: str, en: str) -> Text:
    """A stranger has no language setting: the one they wrote in, or both when they wrote nothing."""
    if is_chinese(line):
        return Text(zh)
    return Text(en if line else f"{zh}\n{en}")


def unbound(line: str) -> Text:
    """All an unbound follower learns: how to bind (no user id to hand out, nothing about the brand's data)."""
    return _in_their_language(
        line, "您好！请先绑定：向管理员索取绑定码，然后在这里发送“绑定 绑定码”。企业微信里的成员也可以在企业微信发送“绑定码”自助获取。",
        "Hello! Bind your account first: ask your admin for a binding code and send: bind CODE. "
        "If you are in the brand's WeCom, send bindcode there to get one.")


def unregistered(user_id: str, line: str) -> Text:
    return _in_their_language(
        line, f"您好！您还没有开通本机器人。有邀请码请发送“加入 邀请码”；没有的话，请把您的用户ID {user_id} 发给管理员为您开通。",
        f"Hello! You are not registered with this bot yet. Have an invite code? Send: join CODE. "
        f"Otherwise ask your admin to add you; your user id is {user_id}.")
